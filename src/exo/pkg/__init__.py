"""The package manager: signed ``.exopkg`` archives, TUF repositories, libsolv solving,
and atomic generations under ``<EXO_ROOT>/exo/apps``. See docs/packages.md."""


class PkgError(Exception):
    """Any package-manager failure; its text is the one line the CLI prints."""
