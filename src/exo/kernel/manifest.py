"""Process manifests: the capabilities and limits a program runs with.

A manifest is TOML::

    [sandbox]
    capabilities = ["storage://home/demo=READ,WRITE", "net://loopback:8080=SEND,RECV"]

    [limits]
    memory = "256M"   # bytes, or with a K/M/G suffix
    pids = 64
    cpu = 0.5         # CPUs
    children = 4      # kernel quotas (exo.kernel.quota): live children, handles,
    handles = 1024    # capabilities received from others, inbox, tokens in flight

Every error names the file and the offending field in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from exo._value import Value
from exo.abi.errors import AbiError, ErrorCode
from exo.kernel.caps import CapabilityError, ResourceName, Rights
from exo.kernel.caps.names import check_rights, scheme_rights
from exo.kernel.quota import NAMES as QUOTA_NAMES
from exo.kernel.quota import Quotas

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
DEFAULT_MEMORY = 1 << 30
DEFAULT_PIDS = 256


class ManifestError(AbiError, ValueError):
    """A manifest or a --cap argument that cannot be used as given."""

    code = ErrorCode.INVALID_MANIFEST


class Grant(Value):  # Value, not a dataclass: this module is on the boot path
    __slots__ = ("name", "rights")

    def __init__(self, name: ResourceName, rights: Rights) -> None:
        self.name = name
        self.rights = rights

    def _key(self) -> tuple[ResourceName, Rights]:
        return (self.name, self.rights)

    def __str__(self) -> str:
        return f"{self.name}={self.rights.format()}"

    def __repr__(self) -> str:
        return f"Grant({str(self)!r})"


class Limits(Value):
    """What a process may spend: cgroup limits of the host (memory, pids, cpu) and the
    kernel's own quotas (``exo.kernel.quota``)."""

    __slots__ = ("cpu", "memory", "pids", "quotas")

    def __init__(self, memory: int | None = DEFAULT_MEMORY, pids: int | None = DEFAULT_PIDS,
                 cpu: float | None = None, quotas: Quotas | None = None) -> None:
        self.memory = memory
        self.pids = pids
        self.cpu = cpu
        self.quotas = quotas if quotas is not None else Quotas()

    def _key(self) -> tuple[int | None, int | None, float | None, Quotas]:
        return (self.memory, self.pids, self.cpu, self.quotas)

    def within(self, parent: Limits) -> Limits:
        """Each limit at most the parent's (None, unlimited, only where the parent is)."""
        def cap(mine: float | None, theirs: float | None) -> float | None:
            if theirs is None:
                return mine
            return theirs if mine is None else min(mine, theirs)

        memory, pids = cap(self.memory, parent.memory), cap(self.pids, parent.pids)
        return Limits(None if memory is None else int(memory),
                      None if pids is None else int(pids),
                      cap(self.cpu, parent.cpu), self.quotas.within(parent.quotas))

    @classmethod
    def from_request(cls, data: object, default: Limits) -> Limits:
        """Limits a process asks for its child (a syscall argument): the fields it names
        replace ``default``'s, each checked; the result is not yet capped by the parent."""
        if not isinstance(data, dict):
            raise ManifestError("limits must be an object")
        unknown = set(data) - {"memory", "pids", "cpu", *QUOTA_NAMES}
        if unknown:
            raise ManifestError(f"limits: unknown field(s) {sorted(unknown)}")
        memory = default.memory if "memory" not in data else _size(data["memory"],
                                                                    "limits.memory")
        pids, cpu = data.get("pids", default.pids), data.get("cpu", default.cpu)
        if pids is not None and (type(pids) is not int or pids < 1):
            raise ManifestError(f"limits.pids: expected a positive integer, got {pids!r}")
        if cpu is not None and (type(cpu) not in (int, float) or not 0.01 <= cpu <= 1024):
            raise ManifestError(f"limits.cpu: expected a number of CPUs in 0.01..1024, "
                                f"got {cpu!r}")
        quotas = default.quotas.as_dict()
        quotas.update({k: v for k, v in data.items() if k in QUOTA_NAMES})
        try:
            return cls(memory, pids, None if cpu is None else float(cpu), Quotas(**quotas))
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"limits: {exc}") from None

    def __repr__(self) -> str:
        return f"Limits(memory={self.memory}, pids={self.pids}, cpu={self.cpu}, {self.quotas!r})"


class PosixX(Value):
    """``[posix_x]``: how an unmodified Linux program runs (docs/posix-x.md).

    ``system_dirs``: the host /etc files ordinary programs read (``namespace.ETC_SYSTEM``)
    and ``etc`` (host /etc paths the program reads, never a secret) are shown read-only.
    ``fork``: it may create processes. ``exec``: the programs it may execute besides
    itself (True: any program of the system directories). ``passthrough``: its
    ``storage://`` directories are exported in FUSE passthrough mode. ``user``: run as
    that user's uid in a user namespace (for programs that refuse root). The loopback
    ports of ``network`` become ``net://loopback:PORT`` grants (``Manifest.grants``).
    """

    __slots__ = ("etc", "exec", "fork", "passthrough", "system_dirs", "user")

    def __init__(self, *, system_dirs: bool = True, fork: bool = False,
                 exec: bool | tuple[str, ...] = (), etc: tuple[str, ...] = (),
                 passthrough: bool = False, user: str | None = None) -> None:
        self.system_dirs = system_dirs
        self.fork = fork
        self.exec = exec
        self.etc = etc
        self.passthrough = passthrough
        self.user = user

    def _key(self) -> tuple[object, ...]:
        return (self.system_dirs, self.fork, self.exec, self.etc, self.passthrough, self.user)

    def __repr__(self) -> str:
        return (f"PosixX(system_dirs={self.system_dirs}, fork={self.fork}, "
                f"exec={self.exec!r}, etc={self.etc!r}, passthrough={self.passthrough}, "
                f"user={self.user!r})")


class Manifest(Value):
    __slots__ = ("grants", "limits", "posix_x")

    def __init__(self, grants: tuple[Grant, ...] = (), limits: Limits | None = None,
                 posix_x: PosixX | None = None) -> None:
        self.grants = grants
        self.limits = limits if limits is not None else Limits()
        self.posix_x = posix_x

    def _key(self) -> tuple[tuple[Grant, ...], Limits, PosixX | None]:
        return (self.grants, self.limits, self.posix_x)

    def __repr__(self) -> str:
        return (f"Manifest(grants={self.grants!r}, limits={self.limits!r}, "
                f"posix_x={self.posix_x!r})")


def parse_grant(text: str) -> Grant:
    """``NAME=RIGHTS`` as given to ``--cap``: rights the scheme uses, at least one
    (``ALL``: every right of that scheme)."""
    name, sep, rights = text.rpartition("=")
    if not sep or not name:
        raise ManifestError(f"capability {text!r}: expected NAME=RIGHTS, "
                            "e.g. storage://home/demo=READ,WRITE")
    try:
        resource = ResourceName.parse(name)
        parsed = Rights.parse(rights)
        if rights.strip().upper() == "ALL":
            parsed = scheme_rights(resource.scheme)
        check_rights(resource, parsed)
        return Grant(resource, parsed)
    except CapabilityError as exc:
        raise ManifestError(f"capability {text!r}: {exc}") from None


def _size(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1] if text and text[-1] in _UNITS else ""
        number = text[: len(text) - len(unit)]
        try:
            size = int(float(number) * _UNITS[unit])
        except ValueError:
            size = 0
        if size > 0:
            return size
    raise ManifestError(f"{where}: expected a size like 268435456 or \"256M\", got {value!r}")


def load_manifest(path: str | Path) -> Manifest:
    p = Path(path)
    return read_manifest(p.read_bytes, str(p))


def read_manifest(read: Callable[[], bytes], where: str) -> Manifest:
    """The manifest whose bytes ``read()`` returns (a file by name, or through the shell's
    descriptor-based tree); every failure is one ``ManifestError`` line naming ``where``."""
    import tomllib

    try:
        data = tomllib.loads(read().decode())
    except FileNotFoundError:
        raise ManifestError(f"{where}: no such manifest") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{where}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{where}: invalid TOML: {exc}") from None
    return manifest_from_dict(data, where)


def manifest_from_dict(data: dict[str, object], where: str) -> Manifest:
    from exo.kernel.manifest_schema import validate

    try:
        parsed = validate(data)
    except ValueError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    grants: list[Grant] = []
    for key in ("capabilities", "filesystem", "network", "ipc"):
        for entry in getattr(parsed.sandbox, key):
            try:
                grants.append(parse_grant(entry))
            except ManifestError as exc:
                raise ManifestError(f"{where}: sandbox.{key}: {exc}") from None
    limits = parsed.limits
    memory = _size(limits.memory, f"{where}: limits.memory")
    asked = {n: getattr(limits, n) for n in QUOTA_NAMES if getattr(limits, n) is not None}
    try:
        quotas = Quotas(**asked)
    except ValueError as exc:
        raise ManifestError(f"{where}: limits: {exc}") from None
    posix_x = None
    if parsed.posix_x is not None:
        px = parsed.posix_x
        for port in px.network:
            grants.append(parse_grant(f"net://loopback:{port}=SEND,RECV"))
        from exo.sandbox.errors import SandboxError
        from exo.sandbox.namespace import check_host_etc

        for path in px.etc:
            if not path.startswith("/etc/") or "\0" in path:
                raise ManifestError(f"{where}: posix_x.etc: {path!r}: expected a host path "
                                    "below /etc")
            try:
                check_host_etc(path)
            except SandboxError as exc:
                raise ManifestError(f"{where}: posix_x.etc: {exc}") from None
        if isinstance(px.exec, list):
            from exo.sandbox.namespace import SYSTEM_DIRS

            for path in px.exec:
                if "\0" in path or not any(path.startswith(d + "/") for d in SYSTEM_DIRS):
                    raise ManifestError(f"{where}: posix_x.exec: {path!r}: expected a "
                                        "program of the system directories (/usr, /bin…); "
                                        "a program of the Exo tree runs under its "
                                        "storage://…=EXECUTE capability")
        if px.user is not None and not px.user.replace("-", "").replace("_", "").isalnum():
            raise ManifestError(f"{where}: posix_x.user: {px.user!r}: expected a user name")
        posix_x = PosixX(system_dirs=px.system_dirs, fork=px.fork,
                         exec=px.exec if isinstance(px.exec, bool) else tuple(px.exec),
                         etc=tuple(px.etc), passthrough=px.passthrough, user=px.user)
    return Manifest(tuple(grants), Limits(memory, limits.pids, limits.cpu, quotas), posix_x)
