"""The Debian bridge: a Debian package and the Debian packages it needs, fetched with
apt, turned into one signed ``.exopkg`` with a generated, minimal sandbox manifest.

1. **Solve** (``debian_index``): libsolv over apt's candidates says which Debian packages
   the request needs beyond the base system every Debian host has (shared: the sandbox
   shows the host's ``/usr``); those are bundled.
2. **Fetch**: ``apt-get download NAME=VERSION`` for each, from the configured mirror
   (apt checks the signed lists); each ``.deb`` is checked again against the SHA-256 and
   size in those lists before it is opened.
3. **Merge**: each ``.deb`` is unpacked (``dpkg-deb -x``) into its own directory and
   copied into one tree without following a link; documentation is left out; absolute
   symlinks (``/usr/lib/x``) become relative ones inside the package prefix.
4. **Entry**: the program named like the package (``usr/bin``, ``usr/sbin``…; a link
   into a bundled package counts, as ``redis-server`` → ``redis-check-rdb`` of
   ``redis-tools``), wrapped by ``exo-bridge/NAME``: a ``/bin/sh`` script that puts the
   bundled libraries ahead of the host's and execs it. The host's loader must find every
   library.
5. **Manifest**: a private ``storage://home/NAME`` area, and, when the program calls
   ``listen`` (its ELF imports say so), the loopback port its own default configuration
   names (``port 6379``), else 8080; ``[package]`` records what was bundled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from exo.pkg import PkgError, sign
from exo.pkg import format as fmt
from exo.pkg.debian_index import DebianSolver, DebPackage, load_available

#: Left out of bridged packages: documentation, never needed to run.
EXCLUDED = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian",
            "usr/share/bug", "usr/share/doc-base")
BRIDGE_DIR = "exo-bridge"
DEFAULT_PORT = 8080
_PROGRAM_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin")
_PORT_LINE = re.compile(rb"^\s*(?:port|listen)\s+(?:\[?[0-9a-f.:]*\]?:)?([0-9]{2,5})\b",
                        re.MULTILINE)
_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")


class DebianError(PkgError):
    """A Debian package that cannot be fetched or bridged."""


def _run(argv: list[str], cwd: Path | None = None,
         env: dict[str, str] | None = None) -> str:
    try:
        r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600,
                           env=env)
    except FileNotFoundError:
        raise DebianError(f"{argv[0]} is not installed (a Debian host is needed)") from None
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["failed"])[-1]
        raise DebianError(f"{' '.join(argv[:2])}: {last}")
    return r.stdout


def exo_version(debian: str) -> str:
    """``1:3.40.1-2+deb12u2`` → ``3.40.1-2.deb12u2.e1``: the upstream version's numeric
    part, then the rest (letters, Debian revision, epoch) as one suffix."""
    epoch, _, rest = debian.rpartition(":")
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    m = re.match(r"^([0-9]+(?:\.[0-9]+)*)(.*)$", upstream)
    if m is None:
        raise DebianError(f"cannot map Debian version {debian!r}")
    parts = [m.group(2), revision, f"e{epoch}" if epoch else ""]
    suffix = ".".join(p for p in (re.sub(r"[^A-Za-z0-9]+", ".", x).strip(".")
                                  for x in parts) if p)
    return m.group(1) + (f"-{suffix}" if suffix else "")


# ------------------------------------------------------------------------ fetching


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch(packages: list[DebPackage], work: Path) -> dict[str, Path]:
    """Download exactly these versions; each checked against apt's signed lists."""
    _run(["apt-get", "download", "-q", *(p.spec for p in packages)], cwd=work)
    by_hash = {_sha256(d): d for d in work.glob("*.deb")}
    out = {}
    for p in packages:
        deb = by_hash.get(p.sha256)
        if deb is None or (p.size and deb.stat().st_size != p.size):
            raise DebianError(f"apt-get download {p.spec}: no .deb matching the SHA-256 "
                              "in apt's lists")
        out[p.name] = deb
    return out


# ------------------------------------------------------------------------- merging


def _excluded(rel: str) -> bool:
    return any(rel == x or rel.startswith(x + "/") for x in EXCLUDED)


def merge(unpacked: Path, tree: Path) -> list[str]:
    """Copy one unpacked ``.deb`` into ``tree`` without following links; returns the
    paths it added. A path another package already put there is kept (Debian's
    Replaces); a file where a directory is (or the reverse) is refused."""
    added: list[str] = []
    for dirpath, dirnames, filenames in os.walk(unpacked):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            src = Path(dirpath) / name
            rel = src.relative_to(unpacked).as_posix()
            st = src.lstat()
            if _excluded(rel) or stat.S_ISLNK(st.st_mode):
                if name in dirnames:  # left out, or a link: never walked into
                    dirnames.remove(name)
                if not _excluded(rel):
                    _merge_link(src, tree, rel, added)
                continue
            dest = tree / rel
            if stat.S_ISDIR(st.st_mode):
                if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
                    raise DebianError(f"{rel}: a directory in one package, not in another")
                dest.mkdir(exist_ok=True)
            elif stat.S_ISREG(st.st_mode):
                if os.path.lexists(dest):
                    if dest.is_dir() and not dest.is_symlink():
                        raise DebianError(f"{rel}: a file in one package, a directory in "
                                          "another")
                    continue
                shutil.copyfile(src, dest, follow_symlinks=False)
                os.chmod(dest, 0o755 if st.st_mode & 0o111 else 0o644)
                added.append(rel)
            else:
                raise DebianError(f"{rel}: device and special files are not bridged")
    return added


def _merge_link(src: Path, tree: Path, rel: str, added: list[str]) -> None:
    dest = tree / rel
    if os.path.lexists(dest):
        return
    target = os.readlink(src)
    if target.startswith("/"):  # inside the package, / is its prefix
        target = os.path.relpath(target, "/" + os.path.dirname(rel))
    os.symlink(target, dest)
    added.append(rel)


def _inside(tree: Path, rel: str) -> Path | None:
    """``rel`` resolved (links followed) if it stays inside ``tree``."""
    real = os.path.realpath(tree / rel)
    top = os.path.realpath(tree)
    return Path(real) if real.startswith(top + os.sep) else None


# ---------------------------------------------------------------------- the entry


def find_entry(tree: Path, name: str, own: list[str]) -> str:
    """The program to run: named like the package, else the first of its own."""
    for d in _PROGRAM_DIRS:
        rel = f"{d}/{name}"
        if os.path.lexists(tree / rel):
            real = _inside(tree, rel)
            if real is None or not real.is_file():
                raise DebianError(f"{name}: {rel} points to {os.readlink(tree / rel)}, "
                                  "which no bundled package holds")
            return rel
    for rel in own:
        if rel.rpartition("/")[0] in _PROGRAM_DIRS and (p := _inside(tree, rel)) \
                and p.is_file():
            return rel
    raise DebianError(f"{name}: no program in usr/bin or usr/sbin")


def library_dirs(tree: Path) -> list[str]:
    """Directories of the bundled shared libraries, for ``LD_LIBRARY_PATH``."""
    found = set()
    for top in ("usr/lib", "lib", "usr/lib64", "lib64"):
        if not (tree / top).is_dir() or (tree / top).is_symlink():
            continue
        for dirpath, _dirs, files in os.walk(tree / top):
            if any(".so" in f and not f.endswith((".py", ".pc")) for f in files):
                found.add(Path(dirpath).relative_to(tree).as_posix())
    return sorted(found)


def wrapper(entry: str, libdirs: list[str]) -> bytes:
    """``exo-bridge/NAME``: the bundled libraries first, then the program."""
    path = ":".join(f'$p/{d}' for d in libdirs)
    ld = f'export LD_LIBRARY_PATH="{path}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"\n' \
        if libdirs else ""
    return (f"#!/bin/sh\n# Generated by the Exo Debian bridge: runs {entry} with the Debian "
            "libraries bundled\n# in this package ahead of the host's base system.\n"
            'case $0 in */*) p="${0%/*}/..";; *) p=..;; esac\n'
            f'{ld}exec "$p/{entry}" "$@"\n').encode()


_LOADERS = ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1",
            "/lib/ld-linux-armhf.so.3")


def check_libraries(program: Path, tree: Path, libdirs: list[str]) -> None:
    """Every shared library the program needs is bundled or in the host's base. Asked of
    the host's own dynamic loader (``ld.so PROGRAM``, tracing), not ``ldd``, which may run a
    program whose ``PT_INTERP`` names another loader."""
    with open(program, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return
    loader = next((p for p in _LOADERS if os.path.exists(p)), None)
    if loader is None:
        raise DebianError("no dynamic loader known for this host's architecture")
    env = {"PATH": "/usr/bin:/bin", "LD_TRACE_LOADED_OBJECTS": "1",  # as ldd asks it
           "LD_LIBRARY_PATH": ":".join(str(tree / d) for d in libdirs)}
    r = subprocess.run([loader, str(program)], capture_output=True, text=True, env=env,
                       timeout=60)
    missing = [line.split()[0] for line in r.stdout.splitlines() if "not found" in line]
    if missing:
        raise DebianError(f"{program.name} needs {', '.join(missing)}, neither bundled nor "
                          "on this host")
    if r.returncode != 0 and "statically linked" not in r.stdout + r.stderr:
        raise DebianError(f"{program.name}: the dynamic loader cannot load it "
                          f"({(r.stderr.strip().splitlines() or ['failed'])[-1]})")


def listens(program: Path) -> bool:
    """Does the ELF import ``listen`` (a server)?"""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(program, "rb") as f:
            sym = ELFFile(f).get_section_by_name(".dynsym")
            return sym is not None and any(s.name == "listen"
                                           for s in sym.iter_symbols())  # type: ignore[attr-defined]
    except (ELFError, OSError):
        return False


def default_port(tree: Path, own: list[str]) -> int:
    """The first unprivileged port the package's own configuration listens on."""
    for rel in own:
        if not rel.startswith("etc/") or not (tree / rel).is_file() \
                or (tree / rel).is_symlink() or (tree / rel).stat().st_size > 1 << 20:
            continue
        for m in _PORT_LINE.finditer((tree / rel).read_bytes()):
            port = int(m.group(1))
            if 1024 <= port <= 65535:
                return port
    return DEFAULT_PORT


def manifest(name: str, deb: DebPackage, entry: str, bundled: list[DebPackage],
             port: int | None) -> bytes:
    caps = [f"storage://home/{name}=READ,WRITE"]
    if port is not None:
        caps.append(f"net://127.0.0.1:{port}=SEND,RECV")
    description = f"{deb.description} (from Debian {deb.version})"
    others = [f"{p.name} {p.version}" for p in bundled if p.name != deb.name]
    return (f"[package]\nname = {json.dumps(name)}\n"
            f"version = {json.dumps(exo_version(deb.version))}\n"
            f"description = {json.dumps(description)}\n"
            f"debian = {json.dumps(f'{deb.name} {deb.version}')}\n"
            f"debian-bundled = {json.dumps(others)}\n"
            'debian-shared = "the Debian base system (Essential and Priority: required), '
            'from the host"\n\n'
            f"[sandbox]\ncapabilities = {json.dumps(caps)}\n\n"
            f'[limits]\nmemory = "512M"\npids = 64\n\n'
            f'[binary]\ntype = "elf"\nentry = {json.dumps(entry)}\n').encode()


# ------------------------------------------------------------------------ building


def bridge(name: str, solver: DebianSolver, work: Path, signer: sign.Signer) -> Path:
    """One Debian package (and what it needs) → a signed ``.exopkg`` in ``work``."""
    if not fmt.NAME_RE.match(name):
        raise DebianError(f"{name}: this Debian name cannot be an Exo package name")
    closure = solver.closure([name])  # refuses an unknown name
    deb = solver.available[name]
    bundled = sorted({p.name: p for p in [*closure.bundle, deb]}.values(),
                     key=lambda p: (p.name != name, p.name))
    debs = fetch(bundled, work)
    tree = work / f"tree-{name}"
    tree.mkdir()
    own: list[str] = []
    for p in bundled:  # the requested package first: its files win
        unpacked = work / f"deb-{p.name}"
        _run(["dpkg-deb", "-x", str(debs[p.name]), str(unpacked)])
        added = merge(unpacked, tree)
        if p.name == name:
            own = added
        shutil.rmtree(unpacked)
    program = find_entry(tree, name, own)
    libdirs = library_dirs(tree)
    real = _inside(tree, program)
    assert real is not None
    check_libraries(real, tree, libdirs)
    (tree / BRIDGE_DIR).mkdir(exist_ok=True)
    (tree / BRIDGE_DIR / name).write_bytes(wrapper(program, libdirs))
    (tree / BRIDGE_DIR / name).chmod(0o755)
    port = default_port(tree, own) if listens(real) or "sbin/" in program else None
    items = fmt.scan_tree(tree, lambda rel: False)
    text = manifest(name, deb, f"{BRIDGE_DIR}/{name}", bundled, port)
    return fmt.write_package(work / f"{name}-{exo_version(deb.version)}.exopkg", text,
                             items, signer, level=9)


def import_debian(packages: list[str], repo_dir: Path, signer: sign.Signer,
                  skip_published: bool = False) -> list[str]:
    """Fetch ``packages`` (and what they need) with apt, bridge and publish each into
    ``repo_dir``. With ``skip_published``, a version already there is left as it is."""
    from exo.pkg.repo import Repository

    for pkg in packages:
        if not _NAME.match(pkg):
            raise DebianError(f"bad Debian package name {pkg!r}")
    repo = Repository(repo_dir)
    solver = DebianSolver(load_available())
    done = []
    for pkg in packages:
        deb = solver.available.get(pkg)
        if skip_published and deb is not None and \
                repo.has(pkg, exo_version(deb.version)):
            done.append(f"{pkg} {exo_version(deb.version)} (already there)")
            continue
        with tempfile.TemporaryDirectory(prefix="exo-apt-") as tmp:
            out = bridge(pkg, solver, Path(tmp), signer)
            published = repo.publish(out)
        done.append(f"{published.manifest.name} {published.manifest.version}")
    return done
