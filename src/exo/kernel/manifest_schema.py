"""The TOML layout of a process manifest, validated by msgspec.

A module of its own because msgspec (and the ``typing`` it brings) must not load at boot:
``exo.kernel.manifest`` imports this only when a manifest file is read. Types and bounds live
here; what the values mean (capability names, sizes such as ``"256M"``) is checked by
``exo.kernel.manifest``, which also turns msgspec's errors into one-line messages that name
the file and the field.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from exo.kernel.manifest import DEFAULT_MEMORY, DEFAULT_PIDS

_Entries = list[str]  # "NAME=RIGHTS", parsed by exo.kernel.manifest.parse_grant


class SandboxSection(msgspec.Struct, forbid_unknown_fields=True):
    capabilities: _Entries = msgspec.field(default_factory=list)
    filesystem: _Entries = msgspec.field(default_factory=list)
    network: _Entries = msgspec.field(default_factory=list)
    ipc: _Entries = msgspec.field(default_factory=list)


class LimitsSection(msgspec.Struct, forbid_unknown_fields=True):
    memory: Annotated[int, msgspec.Meta(gt=0)] | str = DEFAULT_MEMORY  # bytes, or "256M"
    pids: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_PIDS
    cpu: Annotated[float, msgspec.Meta(ge=0.01, le=1024)] | None = None  # CPUs
    # Kernel quotas (exo.kernel.quota); None: the default. Ranges are checked by Quotas.
    children: Annotated[int, msgspec.Meta(ge=0)] | None = None
    handles: Annotated[int, msgspec.Meta(ge=1)] | None = None
    received: Annotated[int, msgspec.Meta(ge=0)] | None = None
    inbox: Annotated[int, msgspec.Meta(ge=0)] | None = None
    in_flight: Annotated[int, msgspec.Meta(ge=0)] | None = None
    files: Annotated[int, msgspec.Meta(ge=0)] | None = None


class PosixXSection(msgspec.Struct, forbid_unknown_fields=True):
    """``[posix_x]``: what an unmodified Linux program needs besides capabilities
    (docs/posix-x.md); meanings and checks in ``exo.kernel.manifest.PosixX``."""

    system_dirs: bool = True
    fork: bool = False
    exec: bool | list[str] = msgspec.field(default_factory=list)
    network: list[Annotated[int, msgspec.Meta(ge=1, le=65535)]] = msgspec.field(
        default_factory=list)
    etc: list[str] = msgspec.field(default_factory=list)
    passthrough: bool = False
    user: str | None = None


class ManifestFile(msgspec.Struct, forbid_unknown_fields=True):
    """The whole file; [package], [binary] and [dependencies] belong to the package manager."""

    sandbox: SandboxSection = msgspec.field(default_factory=SandboxSection)
    limits: LimitsSection = msgspec.field(default_factory=LimitsSection)
    posix_x: PosixXSection | None = None
    package: dict[str, Any] = msgspec.field(default_factory=dict)
    binary: dict[str, Any] = msgspec.field(default_factory=dict)
    dependencies: dict[str, Any] = msgspec.field(default_factory=dict)


def validate(data: dict[str, object]) -> ManifestFile:
    """Raise ``ValueError("FIELD: what is wrong")`` (FIELD empty at the top level)."""
    try:
        return msgspec.convert(data, ManifestFile)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$")
        field = where.rstrip("`").lstrip(".")
        raise ValueError(f"{field}: {message}" if field else message) from None
