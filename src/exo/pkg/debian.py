"""The Debian bridge, first step: a Debian package (fetched with ``apt-get download``)
turned into a signed ``.exopkg`` with a generated, minimal sandbox manifest.

What it does: unpacks the ``.deb`` (``dpkg-deb -x``), keeps its files as the payload,
takes the name, version and description from its control fields, picks the program named
like the package in ``usr/bin`` or ``usr/sbin`` (else the first one) as the entry, and
writes a manifest granting only a private ``storage://home/NAME`` area (and, for a
program in ``sbin``, a daemon, loopback port 8080). What it does not do yet: bundle the
Debian dependencies. The shared libraries an ELF entry needs must be on the host (the
sandbox exposes the host's ``/usr/lib``); ``ldd`` is checked and a missing one refused.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from exo.pkg import PkgError, sign
from exo.pkg import format as fmt


class DebianError(PkgError):
    """A Debian package that cannot be fetched or bridged."""


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
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


def _entry(tree: Path, name: str) -> str:
    for d in ("usr/bin", "usr/sbin", "bin", "sbin"):
        if (tree / d / name).is_file():
            return f"{d}/{name}"
        if (tree / d / name).is_symlink():
            raise DebianError(f"{name}: {d}/{name} links to {os.readlink(tree / d / name)}, "
                              "which another Debian package ships (bundling Debian "
                              "dependencies is not built yet)")
    for d in ("usr/bin", "usr/sbin", "bin", "sbin"):
        found = sorted(p for p in (tree / d).glob("*") if p.is_file()) \
            if (tree / d).is_dir() else []
        if found:
            return found[0].relative_to(tree).as_posix()
    raise DebianError(f"{name}: no program in usr/bin or usr/sbin")


def _check_libraries(program: Path) -> None:
    out = subprocess.run(["ldd", str(program)], capture_output=True, text=True).stdout
    missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
    if missing:
        raise DebianError(f"{program.name} needs {', '.join(missing)}, not on this host "
                          "(bundling Debian dependencies is not built yet)")


def deb_to_exopkg(deb: Path, out_dir: Path, signer: sign.Signer) -> Path:
    """Convert one downloaded ``.deb``; returns the written ``.exopkg``."""
    fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Description"])
    info: dict[str, str] = {}
    for line in fields.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith(" "):
            info[key.strip()] = value.strip()
    name = info.get("Package", "").lower()
    if not fmt.NAME_RE.match(name):
        raise DebianError(f"{deb.name}: package name {name!r} cannot be used")
    version = exo_version(info.get("Version", ""))
    with tempfile.TemporaryDirectory(prefix="exo-deb-") as tmp:
        tree = Path(tmp) / "tree"
        _run(["dpkg-deb", "-x", str(deb), str(tree)])
        entry = _entry(tree, name)
        _check_libraries(tree / entry)
        caps = [f"storage://home/{name}=READ,WRITE"]
        if "/sbin/" in f"/{entry}":
            caps.append("net://127.0.0.1:8080=SEND,RECV")
        description = f"{info.get('Description', '')} (from Debian {info.get('Version')})"
        manifest = (f"[package]\nname = {json.dumps(name)}\nversion = {json.dumps(version)}\n"
                    f"description = {json.dumps(description)}\n\n"
                    f"[sandbox]\ncapabilities = {json.dumps(caps)}\n\n"
                    f'[limits]\nmemory = "512M"\npids = 64\n\n'
                    f"[binary]\ntype = \"elf\"\nentry = {json.dumps(entry)}\n")
        items = fmt.scan_tree(tree, lambda rel: False)
        return fmt.write_package(out_dir / f"{name}-{version}.exopkg", manifest.encode(),
                                 items, signer, level=9)


def import_debian(packages: list[str], repo_dir: Path, signer: sign.Signer) -> list[str]:
    """Fetch ``packages`` with apt, convert and publish them into ``repo_dir``."""
    from exo.pkg.repo import Repository

    repo = Repository(repo_dir)
    done = []
    with tempfile.TemporaryDirectory(prefix="exo-apt-") as tmp:
        work = Path(tmp)
        for pkg in packages:
            if not re.match(r"^[a-z0-9][a-z0-9.+-]*$", pkg):
                raise DebianError(f"bad Debian package name {pkg!r}")
            _run(["apt-get", "download", "-q", pkg], cwd=work)
            debs = sorted(work.glob(f"{pkg}_*.deb"))
            if not debs:
                raise DebianError(f"apt-get download {pkg}: no .deb written")
            out = deb_to_exopkg(debs[-1], work, signer)
            published = repo.publish(out)
            done.append(f"{published.manifest.name} {published.manifest.version}")
    return done

