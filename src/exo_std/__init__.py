"""exo_std: the native API that Exo applications import.

Mirrors the seeds' API: ``fs.File.open("storage://documents/x.txt", Rights.READ |
Rights.WRITE)``, ``request_capability``, ``cap.attenuate(Rights.READ)``,
``send_capability(pid, cap)``, ``process.spawn``, ``process.wait``. Standard library
only: it runs inside the sandbox with the host's interpreter.
"""

from exo.abi import Rights
from exo_std import fs, process
from exo_std.caps import (
    Capability,
    handles,
    receive_capability,
    request_capability,
    send_capability,
)
from exo_std.errors import (
    CapabilityDenied,
    CapabilityError,
    CapabilityRevoked,
    ExoError,
    InsufficientRights,
    InvalidHandle,
    KernelUnavailable,
)

__all__ = [
    "Capability",
    "CapabilityDenied",
    "CapabilityError",
    "CapabilityRevoked",
    "ExoError",
    "InsufficientRights",
    "InvalidHandle",
    "KernelUnavailable",
    "Rights",
    "fs",
    "handles",
    "process",
    "receive_capability",
    "request_capability",
    "send_capability",
]
