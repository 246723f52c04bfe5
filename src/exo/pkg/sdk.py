"""The SDK: ``exo new`` (a working project from a template), ``exo build`` (a signed
``dist/NAME-VERSION.exopkg``) and ``exo publish`` (into a repository directory)."""

from __future__ import annotations

import os
from pathlib import Path

from exo.pkg import PkgError, sign
from exo.pkg import format as fmt
from exo.pkg.repo import Repository

TEMPLATES = ("cli", "service", "agent")
_EXCLUDE_DIRS = {"dist", ".git", "__pycache__", ".venv", fmt.META_DIR}

_SANDBOX = {
    "cli": 'capabilities = ["storage://home/{name}=READ,WRITE"]',
    "service": 'capabilities = ["net://127.0.0.1:8080=SEND,RECV"]',
    "agent": 'capabilities = ["ipc://{name}=SEND,RECV", "agent://{name}=SEND,RECV"]',
}
_DESCRIPTION = {"cli": "A command-line tool", "service": "A small HTTP service on loopback",
                "agent": "An Exo agent that answers requests on its IPC channel"}
_MANIFEST = """[package]
name = "{name}"
version = "0.1.0"
description = "{description}"

[dependencies]
# other = ">=1.0, <2"

[sandbox]
# exactly the capabilities the app needs; shown to the user before it is installed
{sandbox}

[limits]
memory = "128M"
pids = 16

[binary]
type = "python"
entry = "bin/{name}"
"""
_PROGRAMS = {
    "cli": '''#!/usr/bin/env python3
"""{name}: a command-line tool for Exo-OS."""
import sys


def main() -> int:
    who = sys.argv[1] if len(sys.argv) > 1 else "world"
    print(f"Hello, {{who}}, from {name}!")
    return 0


if __name__ == "__main__":
    sys.exit(main())
''',
    "service": '''#!/usr/bin/env python3
"""{name}: an HTTP service on loopback (port 8080, the capability it asks for)."""
import http.server


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"{name} is up\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    http.server.HTTPServer(("127.0.0.1", 8080), Handler).serve_forever()
''',
    "agent": '''#!/usr/bin/env python3
"""{name}: an agent; reads one request per line and answers it."""
import sys


def answer(request: str) -> str:
    return f"{name} heard: {{request}}"


if __name__ == "__main__":
    for line in sys.stdin:
        print(answer(line.strip()), flush=True)
''',
}


def new_project(parent: Path, name: str, template: str) -> Path:
    """Create ``parent/NAME`` from a template; refuses to overwrite anything."""
    if not fmt.NAME_RE.match(name):
        raise PkgError(f"bad package name {name!r} (lower-case letters, digits, '.', '-', '_')")
    if template not in TEMPLATES:
        raise PkgError(f"unknown template {template!r} (known: {', '.join(TEMPLATES)})")
    project = parent / name
    if project.exists():
        raise PkgError(f"{project} already exists")
    (project / "bin").mkdir(parents=True)
    (project / "exopkg.toml").write_text(_MANIFEST.format(
        name=name, description=_DESCRIPTION[template],
        sandbox=_SANDBOX[template].format(name=name)))
    program = project / "bin" / name
    program.write_text(_PROGRAMS[template].format(name=name))
    program.chmod(0o755)
    (project / "README.md").write_text(
        f"# {name}\n\n{_DESCRIPTION[template]}.\n\n"
        "    exo build --release\n    exo publish --repo ../repo\n")
    (project / ".gitignore").write_text("dist/\n")
    return project


def _excluded(rel: str) -> bool:
    parts = rel.split("/")
    return (parts[0] in _EXCLUDE_DIRS or "__pycache__" in parts or rel.endswith(".pyc")
            or rel in (fmt.MANIFEST_NAME, ".gitignore"))


def build(project: Path, release: bool = False, key: str | None = None,
          root: Path | None = None) -> Path:
    """``dist/NAME-VERSION.exopkg`` from the project: every file but build output, signed
    with ``key`` (the default file key under ``root`` when None). ``release``
    compresses harder (zstd 19 instead of 3)."""
    from exo.kernel.config import resolve_root

    manifest_path = project / fmt.MANIFEST_NAME
    try:
        manifest = manifest_path.read_bytes()
    except FileNotFoundError:
        raise PkgError(f"no {fmt.MANIFEST_NAME} in {project} (exo new NAME)") from None
    m = fmt.parse_manifest(manifest, str(manifest_path))
    items = fmt.scan_tree(project, _excluded)
    paths = {e.path for e, _ in items}
    if m.entry and m.entry not in paths:
        raise PkgError(f"{manifest_path}: binary.entry {m.entry!r} is not in the project")
    signer = sign.load_signer(root or resolve_root(None), key)
    out = project / "dist" / f"{m.name}-{m.version}.exopkg"
    return fmt.write_package(out, manifest, items, signer, level=19 if release else 3)


def publish(pkg_path: Path, repo: str) -> fmt.Package:
    """Add a built package to the repository ``repo``: a directory (signed here, with its
    keys) or the URL of ``exo repo serve`` (sent; the server verifies and signs)."""
    if repo.startswith(("http://", "https://")):
        from exo.pkg import upload

        pkg = fmt.read_package(pkg_path)  # a broken package is refused before sending
        upload.send(pkg_path, repo)
        return pkg
    if not os.path.isdir(repo):
        raise PkgError(f"{repo}: no such repository directory (exo repo init {repo})")
    return Repository(Path(repo)).publish(pkg_path)
