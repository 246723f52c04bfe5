"""Hot-reloadable modules (issue 13): signed ``.exopkg`` services run as sandboxed Exo
processes, routed by the kernel's module manager, upgraded and rolled back without a
reboot or a lost request. See docs/modules.md."""


class ModuleError(Exception):
    """A refused or failed module operation; its text is the one line the CLI prints."""
