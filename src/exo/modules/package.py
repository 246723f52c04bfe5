"""A module's package: a signed ``.exopkg`` whose ``[binary]`` is ``type = "python"``,
``kind = "module"`` and whose ``[module]`` table names the service it provides.

Checked before anything runs: the signature (``exo.pkg.format.read_package``: both
halves, hashes), that the signer is trusted on this Exo root, and that the manifest asks
for no more than a module may hold (``POLICY``). Accepted packages are kept in
``var/lib/modules/store`` (so ``load NAME``, ``upgrade --version`` and ``rollback`` find
them) and unpacked once into ``exo/modules/NAME/VERSION`` (what the sandbox reads).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from exo.modules import ModuleError

#: What a module's process may hold. ``{service}`` and ``{name}`` are its own; anything
#: else in ``[sandbox]`` is refused ("asks for more than a module may hold") unless
#: ``etc/modules/policy.toml`` grants it (``exo.modules.policy``).
POLICY = ("{scheme}://{service}", "module://{name}", "storage://var/lib/modules/{name}")
SERVICE_RE = re.compile(r"^(ipc|device)://([a-z0-9][a-z0-9._/-]{0,63})$")
#: ``[binary] type`` of a module and the entry it needs.
TYPES = {"python": ".py", "wasm": ".wasm"}


@dataclass(frozen=True)
class ModulePackage:
    name: str
    version: str
    service: str  # the NAME of ipc://NAME or device://NAME
    entry: str
    path: Path  # the verified .exopkg
    digest: bytes  # SHA-256 of the signed header: what is measured
    signer: str
    manifest_bytes: bytes
    scheme: str = "ipc"  # "device": the kernel holds the device (exo.modules.devices)
    kind: str = "python"  # or "wasm": run by exo.modules.wasm_runner

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.service}"


def store_dir(root: Path) -> Path:
    return root / "var" / "lib" / "modules" / "store"


def install_dir(root: Path, name: str, version: str) -> Path:
    return root / "exo" / "modules" / name / version


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"[0-9]+", version))


def trusted_signers(root: Path) -> set[str]:
    """Fingerprints trusted for modules: this root's package build key (``exo build``'s
    default) and each line of ``etc/modules/trusted``."""
    from exo.pkg import sign

    found: set[str] = set()
    key = sign.key_dir(root) / "default.key"
    if key.exists():
        from exo.security import pq

        found.add(pq.HybridSigningKey.from_bytes(key.read_bytes()).public_key().fingerprint())
    listed = root / "etc" / "modules" / "trusted"
    if listed.exists():
        found.update(line.split("#")[0].strip() for line in listed.read_text().splitlines())
    return {f for f in found if f}


def _check_policy(root: Path, name: str, scheme: str, service: str, caps: list[str],
                  memory: object) -> None:
    from exo.kernel.manifest import parse_grant
    from exo.modules.policy import load_policy

    policy = load_policy(root)
    if not policy.allows(name):
        raise ModuleError(f"{name}: refused: not in the allow-list of {policy.path} "
                          f"({', '.join(policy.allow or ()) or 'empty'})")
    allowed = [p.format(scheme=scheme, service=service, name=name) for p in POLICY]
    allowed += policy.extra(name)
    for text in caps:
        resource = str(parse_grant(text).name)
        if not any(resource == a or resource.startswith(a + "/") for a in allowed):
            raise ModuleError(f"{name}: refused: its manifest asks for {text}, more than a "
                              f"module may hold ({', '.join(allowed)})")
    if isinstance(memory, int) and memory > policy.memory:
        raise ModuleError(f"{name}: refused: its manifest asks for {memory >> 20} MiB of "
                          f"memory, more than a module may have ({policy.memory >> 20} MiB)")


def verify(root: Path, path: Path) -> ModulePackage:
    """Open and check ``path``; a ``ModuleError`` with one line says why it is refused."""
    from exo.kernel.manifest import ManifestError, manifest_from_dict
    from exo.pkg import PkgError
    from exo.pkg import format as fmt

    trusted = trusted_signers(root)
    try:
        pkg = fmt.read_package(path, trusted=trusted.__contains__)
    except PkgError as exc:
        why = str(exc).replace("which this repository does not trust",
                               "which this Exo root does not trust for modules "
                               "(etc/modules/trusted)")
        raise ModuleError(f"refused: {why}") from None
    m = pkg.manifest
    binary = m.raw.get("binary", {})
    if m.binary_type not in TYPES or binary.get("kind") != "module":
        raise ModuleError(f"{m.name}: refused: not a module ([binary] needs type = \"python\" "
                          "or \"wasm\", and kind = \"module\")")
    section = m.raw.get("module", {})
    match = SERVICE_RE.match(str(section.get("service", ""))) if isinstance(section, dict) \
        else None
    if match is None:
        raise ModuleError(f"{m.name}: refused: [module] service must be ipc://NAME or "
                          "device://NAME")
    scheme, service = match.group(1), match.group(2)
    if scheme == "device":
        from exo.modules.devices import DEVICES

        if service not in DEVICES:
            raise ModuleError(f"{m.name}: refused: device://{service} is no hosted device "
                              f"({', '.join(sorted(DEVICES))})")
    if not m.entry or m.entry not in {e.path for e in pkg.header.entries}:
        raise ModuleError(f"{m.name}: refused: binary.entry {m.entry!r} is not in the package")
    if not m.entry.endswith(TYPES[m.binary_type]):
        raise ModuleError(f"{m.name}: refused: a {m.binary_type} module's entry ends with "
                          f"{TYPES[m.binary_type]}, not {m.entry!r}")
    if m.binary_type == "wasm":
        from exo.modules.wasm import config

        config(m.name, m.raw)  # refused here, before anything runs
    try:
        limits = manifest_from_dict({k: m.raw[k] for k in ("sandbox", "limits")
                                     if k in m.raw}, m.name).limits
    except ManifestError as exc:
        raise ModuleError(f"{m.name}: refused: {exc}") from None
    _check_policy(root, m.name, scheme, service, m.capabilities, limits.memory)
    return ModulePackage(m.name, m.version, service, m.entry, path,
                         hashlib.sha256(pkg.header_bytes).digest(), pkg.signer,
                         pkg.manifest_bytes, scheme, m.binary_type)


def keep(root: Path, mod: ModulePackage) -> ModulePackage:
    """Copy into the store (re-verified from there) and unpack once for the sandbox."""
    from exo.pkg import format as fmt

    store = store_dir(root)
    store.mkdir(parents=True, exist_ok=True)
    kept = store / f"{mod.name}-{mod.version}.exopkg"
    if mod.path.resolve() != kept.resolve():
        tmp = kept.with_suffix(".part")
        shutil.copyfile(mod.path, tmp)
        tmp.replace(kept)
    mod = verify(root, kept)
    dest = install_dir(root, mod.name, mod.version)
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = dest.with_name(dest.name + ".part")
        shutil.rmtree(tmp_dir, ignore_errors=True)
        fmt.extract(fmt.read_package(kept), tmp_dir)
        tmp_dir.replace(dest)
    return mod


def find(root: Path, name: str, version: str | None = None) -> Path:
    """The stored package of ``name`` (at ``version``, else the newest)."""
    store = store_dir(root)
    if version is not None:
        path = store / f"{name}-{version}.exopkg"
        if not path.exists():
            raise ModuleError(f"{name} {version}: no such module package (exo module load "
                              "PATH first)")
        return path
    found = sorted(store.glob(f"{name}-*.exopkg"),
                   key=lambda p: version_key(p.name[len(name) + 1:-len(".exopkg")]))
    if not found:
        raise ModuleError(f"{name}: no such module (load its package with exo module load PATH)")
    return found[-1]
