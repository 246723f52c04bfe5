"""A read-only view of the current generation, for the shell: which installed app a
``/exo/bin/NAME`` launcher stands for, so the shell can start its entry directly under
its manifest instead of running the launcher (which would nest ``exo run``).

It only reads ``var/lib/pkg/current/generation.json`` (the layout ``exo.pkg.store``
writes) and takes no lock: a generation is immutable once renamed in, and ``current``
is switched with one rename. Standard library only, no dataclasses, so asking costs
the shell nothing it would notice.
"""

from __future__ import annotations

import json
import posixpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

#: Where the current generation's record is, relative to ``EXO_ROOT`` (``exo.pkg.store``).
CURRENT_GENERATION = "var/lib/pkg/current/generation.json"
#: An installed app's manifest, relative to its prefix (``exo.pkg.format``'s
#: ``META_DIR``/``MANIFEST_NAME``).
MANIFEST = ".exo/exopkg.toml"


class InstalledApp:
    """One package of the current generation that has an entry (a program to run)."""

    __slots__ = ("entry", "name", "version")

    def __init__(self, name: str, version: str, entry: str) -> None:
        self.name = name
        self.version = version
        self.entry = entry

    @property
    def prefix(self) -> str:
        """Its files' Exo path: ``/exo/apps/NAME/VERSION``."""
        return f"/exo/apps/{self.name}/{self.version}"

    @property
    def program(self) -> str:
        """The entry's Exo path (what the launcher runs)."""
        return f"{self.prefix}/{self.entry}"

    @property
    def manifest(self) -> str:
        """The manifest's Exo path, as installed (the one shown before installing)."""
        return f"{self.prefix}/{MANIFEST}"

    @property
    def own_capability(self) -> str:
        """What the launcher adds to the manifest: reading and executing its own files."""
        return f"storage://exo/apps/{self.name}/{self.version}=READ,EXECUTE"


def _packages(root: Path) -> dict[str, object]:
    try:
        packages = json.loads((root / CURRENT_GENERATION).read_text())["packages"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return packages if isinstance(packages, dict) else {}


def installed_apps(root: Path) -> list[InstalledApp]:
    """Every package of the current generation that has an entry, by name."""
    found = (installed_app(root, name) for name in sorted(_packages(root)))
    return [app for app in found if app is not None]


def installed_app(root: Path, name: str) -> InstalledApp | None:
    """The current generation's package ``name`` if it has an entry, else ``None`` (not
    installed, no generation yet, or a record this code does not recognise)."""
    try:
        pkg = _packages(root)[name]
        if not isinstance(pkg, dict):
            return None
        version, entry = pkg["version"], pkg.get("entry") or ""
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (isinstance(version, str) and isinstance(entry, str) and entry):
        return None
    # Names the store would never write: refuse rather than build a path from them.
    if not _component(name) or not _component(version):
        return None
    norm = posixpath.normpath(entry)
    if norm.startswith(("/", "..")) or "\0" in norm:
        return None
    return InstalledApp(name, version, norm)


def _component(text: str) -> bool:
    return bool(text) and "/" not in text and "\0" not in text and text not in (".", "..")
