"""exo.kernel.caps: the kernel's capability engine (names, rights, spaces, tree, audit).

The names below load on first use, from the module that defines them: the kernel's
modules import ``Rights`` from here, and must not pay for the manager, the audit log and
the name parser they do not use. ``Rights`` itself is defined in ``exo.abi.rights``
(applications use it too) and re-exported here.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from exo.abi.rights import Rights

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
        QuotaExceeded,
        RightsEscalation,
        SpaceExists,
        SpaceFull,
    )
    from .manager import CapabilityManager, HandleInfo, RevokeListener
    from .names import SCHEMES, ResourceName
    from .policy import RequestPolicy, allow_all
    from .space import CapabilitySpace

_HOME = {
    "audit": ("AuditEvent", "AuditLog", "AuditRecord"),
    "capability": ("Capability",),
    "errors": ("CapabilityDenied", "CapabilityError", "CapabilityRevoked", "InsufficientRights",
               "InvalidHandle", "InvalidResourceName", "InvalidRights", "NoSuchSpace",
               "QuotaExceeded", "RightsEscalation", "SpaceExists", "SpaceFull"),
    "manager": ("CapabilityManager", "HandleInfo", "RevokeListener"),
    "names": ("SCHEMES", "ResourceName"),
    "policy": ("RequestPolicy", "allow_all"),
    "exo.abi.rights": ("Rights",),
    "space": ("CapabilitySpace",),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    path = module if module.startswith("exo.") else f"{__name__}.{module}"
    value = getattr(import_module(path), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


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
    "QuotaExceeded",
    "RequestPolicy",
    "ResourceName",
    "RevokeListener",
    "Rights",
    "RightsEscalation",
    "SpaceExists",
    "SpaceFull",
    "allow_all",
]
