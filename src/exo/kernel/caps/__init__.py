"""exo.kernel.caps: the kernel's capability engine (names, rights, spaces, tree, audit)."""

from .audit import AuditEvent, AuditLog, AuditRecord
from .capability import Capability
from .errors import (
    CapabilityDenied,
    CapabilityError,
    CapabilityRevoked,
    InsufficientRights,
    InvalidHandle,
    InvalidResourceName,
    InvalidRights,
    NoSuchSpace,
    RightsEscalation,
    SpaceExists,
    SpaceFull,
)
from .manager import CapabilityManager, HandleInfo, RevokeListener
from .names import SCHEMES, ResourceName
from .policy import RequestPolicy, allow_all
from .rights import Rights
from .space import CapabilitySpace

__all__ = [
    "SCHEMES",
    "AuditEvent",
    "AuditLog",
    "AuditRecord",
    "Capability",
    "CapabilityDenied",
    "CapabilityError",
    "CapabilityManager",
    "CapabilityRevoked",
    "CapabilitySpace",
    "HandleInfo",
    "InsufficientRights",
    "InvalidHandle",
    "InvalidResourceName",
    "InvalidRights",
    "NoSuchSpace",
    "RequestPolicy",
    "ResourceName",
    "RevokeListener",
    "Rights",
    "RightsEscalation",
    "SpaceExists",
    "SpaceFull",
    "allow_all",
]
