"""Resource names: URLs naming what a capability grants, parsed once and normalised.

Parsing happens once, when a name enters the kernel, so that every later comparison
(``covers``, equality, audit) works on one canonical spelling: two spellings of the same
resource (``storage://home//demo/``, ``net://[::ffff:127.0.0.1]:80``) must not be able to
slip past a check written against the other spelling.
"""

from __future__ import annotations

import re
from pathlib import Path

from exo._value import Value
from exo.abi.rights import Rights

from .errors import InvalidResourceName, InvalidRights

TYPE_CHECKING = False  # typing and dataclasses stay off the boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Final

#: Schemes whose path is a ``/``-separated hierarchy (a name covers the names below it).
HIERARCHICAL_SCHEMES: Final = frozenset({"storage", "ipc", "module", "agent", "device"})
SCHEMES: Final = frozenset(HIERARCHICAL_SCHEMES | {"net", "process"})

#: Rights that act on the capability itself (copy it, move it, derive from it): they mean
#: the same for every scheme.
CAPABILITY_RIGHTS: Final = Rights.DUPLICATE | Rights.TRANSFER | Rights.GRANT
#: What each scheme's resource can be used for. A right outside its scheme's set means
#: nothing there (``process://99=READ``) and is refused when a capability is given.
SCHEME_RIGHTS: Final = {
    "storage": Rights.READ | Rights.WRITE | Rights.EXECUTE,  # files: read, write, run
    "net": Rights.SEND | Rights.RECV,       # connect and send, bind and receive
    "ipc": Rights.SEND | Rights.RECV,       # a channel's two directions
    "process": Rights.SEND | Rights.RECV,   # signal it, wait for its end
    "module": Rights.READ | Rights.WRITE | Rights.EXECUTE,  # inspect, load/upgrade, call
    "agent": Rights.SEND | Rights.RECV,     # ask it, hear from it
    "device": Rights.READ | Rights.WRITE,   # read from it, write to it
}

ANY: Final = "*"
LOOPBACK: Final = "loopback"

_MAX_NAME = 4096
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)\Z", re.DOTALL)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")
_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_PID_RE = re.compile(r"[1-9][0-9]{0,9}\Z")


class ResourceName(Value):
    """A parsed, canonical resource name. Build one with :meth:`parse`.

    Fields by scheme:

    * hierarchical (``storage ipc module agent device``): ``path`` is the normalised
      ``/``-separated path (``""`` is the root of ``storage://``; ``"*"`` means every name of
      the other schemes);
    * ``net``: ``host`` is ``"*"``, ``"loopback"``, a lower-case host name or a canonical IP
      address (IPv6 without brackets); ``port`` is an int, or ``None`` for any port;
    * ``process``: ``path`` is the decimal pid, or ``"*"``.
    """

    __slots__ = ("host", "path", "port", "scheme")

    def __init__(self, scheme: str, path: str = "", host: str = "",
                 port: int | None = None) -> None:
        self.scheme = scheme
        self.path = path
        self.host = host
        self.port = port

    def _key(self) -> tuple[str, str, str, int | None]:
        return (self.scheme, self.path, self.host, self.port)

    @classmethod
    def parse(cls, name: str | ResourceName) -> ResourceName:
        """Parse and normalise ``name``; raise :class:`InvalidResourceName` if malformed."""
        if isinstance(name, ResourceName):
            return name
        if not isinstance(name, str):
            raise InvalidResourceName(
                f"resource name must be a string, not {type(name).__name__}"
            )
        # Before anything else, and in bytes: a name's cost (audit, memory, regex work) is
        # its encoded size, and a character can take 4 bytes.
        if len(name) > _MAX_NAME or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME:
            raise InvalidResourceName(f"resource name longer than {_MAX_NAME} bytes")
        if _CONTROL_RE.search(name):
            raise InvalidResourceName(
                f"resource name {name!r} contains a NUL or control character"
            )
        match = _SCHEME_RE.match(name)
        if match is None:
            raise InvalidResourceName(
                f"resource name {name!r} is not a URL (expected SCHEME://..., "
                f"schemes: {', '.join(sorted(SCHEMES))})"
            )
        scheme, rest = match.group(1).lower(), match.group(2)
        if scheme not in SCHEMES:
            raise InvalidResourceName(
                f"unknown scheme {scheme!r} in {name!r} (known: {', '.join(sorted(SCHEMES))})"
            )
        if scheme == "storage":
            return cls("storage", path=_storage_path(name, rest))
        if scheme == "net":
            host, port = _net(name, rest)
            return cls("net", host=host, port=port)
        if scheme == "process":
            if rest == ANY or _PID_RE.match(rest):
                return cls("process", path=rest)
            raise InvalidResourceName(f"{name!r}: expected process://PID (PID ≥ 1) or process://*")
        return cls(scheme, path=_segments_path(name, scheme, rest))

    # -- relations -------------------------------------------------------------------------

    def covers(self, other: ResourceName) -> bool:
        """Whether a capability for ``self`` also grants access to ``other``.

        A directory covers the files below it, ``net://*`` any endpoint, ``net://loopback``
        127.0.0.0/8, ``::1`` and ``localhost`` (any port unless one is given),
        ``net://HOST:*`` any port on HOST, ``SCHEME://*`` every name of that scheme.
        """
        if self.scheme != other.scheme:
            return False
        if self.scheme == "net":
            return _host_covers(self.host, other.host) and (
                self.port is None or self.port == other.port
            )
        if self.path == other.path:
            return True
        if self.scheme == "storage":
            return self.path == "" or other.path.startswith(self.path + "/")
        if self.path == ANY:
            return True
        if self.scheme == "process" or other.path == ANY:
            return False
        return other.path.startswith(self.path + "/")

    def fs_path(self, root: str | Path) -> Path:
        """The host path of a ``storage://`` name below ``root`` (``EXO_ROOT``).

        The name is already free of ``..`` and empty components, so the result is lexically
        inside ``root``; the storage service must still open it without following symlinks
        out of the tree (``openat2`` with ``RESOLVE_BENEATH``, or Landlock).
        """
        if self.scheme != "storage":
            raise InvalidResourceName(f"{self} is not a storage:// name")
        return Path(root).joinpath(*self.path.split("/")) if self.path else Path(root)

    @property
    def is_wildcard(self) -> bool:
        """Whether the name stands for more than one concrete resource."""
        if self.scheme == "net":
            return self.port is None or self.host in (ANY, LOOPBACK)
        return self.path == ANY

    def __str__(self) -> str:
        if self.scheme == "net":
            host = f"[{self.host}]" if ":" in self.host else self.host
            if self.port is None:
                return f"net://{host}" if self.host in (ANY, LOOPBACK) else f"net://{host}:*"
            return f"net://{host}:{self.port}"
        return f"{self.scheme}://{self.path}"

    def __repr__(self) -> str:
        return f"ResourceName({str(self)!r})"


def scheme_rights(scheme: str) -> Rights:
    """Every right that means something for ``scheme`` (what ``ALL`` stands for there)."""
    return SCHEME_RIGHTS[scheme] | CAPABILITY_RIGHTS


def check_rights(name: ResourceName, rights: Rights) -> None:
    """Refuse rights that mean nothing for ``name``'s scheme, and an empty set, with a
    line saying why and which rights the scheme has."""
    if not rights:
        raise InvalidRights(f"no rights given for {name}")
    useless = rights & ~scheme_rights(name.scheme)
    if useless:
        raise InvalidRights(
            f"{Rights(useless).format()} means nothing for {name.scheme}:// "
            f"(its rights: {scheme_rights(name.scheme).format()})")


# -- parsing helpers ------------------------------------------------------------------------


def _storage_path(name: str, rest: str) -> str:
    """Normalise a storage path lexically; ``..`` may not climb above the Exo root."""
    parts: list[str] = []
    for part in rest.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidResourceName(f"{name!r} escapes the root of the Exo tree ('..')")
            parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def _segments_path(name: str, scheme: str, rest: str) -> str:
    """ipc/module/agent/device: ``/``-separated segments of ``[A-Za-z0-9_][A-Za-z0-9._-]*``."""
    if rest == ANY:
        return ANY
    parts = rest.split("/")
    for part in parts:
        if not _SEGMENT_RE.match(part):
            what = "an empty component" if part == "" else f"a bad component {part!r}"
            raise InvalidResourceName(
                f"{name!r} has {what} (expected {scheme}://NAME[/NAME...] with letters, "
                f"digits, '.', '_', '-', or {scheme}://*)"
            )
    return rest


def _net(name: str, rest: str) -> tuple[str, int | None]:
    """Parse ``HOST:PORT``, ``HOST:*``, ``[IPv6]:PORT``, ``loopback[:PORT]``, ``*[:PORT]``."""
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise InvalidResourceName(f"{name!r}: missing ']' after an IPv6 address")
        host_text, tail = rest[1:end], rest[end + 1 :]
        if tail and not tail.startswith(":"):
            raise InvalidResourceName(f"{name!r}: expected ':PORT' after ']'")
        port_text: str | None = tail[1:] if tail else None
        host = _ip(name, host_text, ipv6_only=True)
    else:
        host_text, sep, port_part = rest.rpartition(":")
        if not sep:
            host_text, port_text = rest, None
        else:
            port_text = port_part
        if ":" in host_text:
            raise InvalidResourceName(f"{name!r}: IPv6 addresses go in brackets: net://[::1]:80")
        host = _host(name, host_text)
    if port_text is None:
        if host not in (ANY, LOOPBACK):
            raise InvalidResourceName(
                f"{name!r}: a net:// name needs a port (net://HOST:PORT or net://HOST:*)"
            )
        return host, None
    if port_text == ANY:
        return host, None
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise InvalidResourceName(f"{name!r}: port {port_text!r} is not a number or '*'")
    port = int(port_text)
    if port > 65535:
        raise InvalidResourceName(f"{name!r}: port {port} is out of range (0-65535)")
    return host, port


def _host(name: str, text: str) -> str:
    lowered = text.lower()
    if lowered in (ANY, LOOPBACK):
        return lowered
    if not lowered:
        raise InvalidResourceName(f"{name!r}: empty host")
    if lowered[0].isdigit() and lowered.replace(".", "").isdigit():
        return _ip(name, lowered, ipv6_only=False)
    host = lowered[:-1] if lowered.endswith(".") else lowered
    if len(host) > 253 or not all(_LABEL_RE.match(label) for label in host.split(".")):
        raise InvalidResourceName(f"{name!r}: {text!r} is not a valid host name or address")
    return host


def _ip(name: str, text: str, *, ipv6_only: bool) -> str:
    try:
        import ipaddress  # lazily: only net:// names need it, not the boot

        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidResourceName(f"{name!r}: {text!r} is not a valid IP address") from None
    if ipv6_only and addr.version != 6:
        raise InvalidResourceName(f"{name!r}: only IPv6 addresses go in brackets")
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # one spelling per endpoint: ::ffff:a.b.c.d is a.b.c.d
    return addr.compressed


def _is_loopback(host: str) -> bool:
    if host in (LOOPBACK, "localhost"):
        return True
    try:
        import ipaddress

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_covers(mine: str, other: str) -> bool:
    if mine == ANY:
        return True
    if mine == LOOPBACK:
        return _is_loopback(other)
    return mine == other
