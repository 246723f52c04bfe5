"""User accounts from the Exo tree's ``/etc/passwd``, with scrypt-hashed passwords.

The file keeps the classic seven colon-separated fields; the second holds the
password hash (``$scrypt$N$r$p$salt$hash``, base64) rather than an ``x`` pointing to
a shadow file, because the Exo tree is private to the kernel. An empty hash means
"no password" and is accepted only for root in development mode.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

_N, _R, _P = 2**14, 8, 1


class UserError(Exception):
    """A bad user name, an unknown user or an unreadable passwd file."""


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str

    def line(self) -> str:
        return ":".join(
            [self.name, self.password_hash, str(self.uid), str(self.gid), self.gecos,
             self.home, self.shell]
        )


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"$scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    parts = stored.split("$")
    if len(parts) != 7 or parts[1] != "scrypt":
        return False
    try:
        n, r, p = int(parts[2]), int(parts[3]), int(parts[4])
        salt, expected = base64.b64decode(parts[5]), base64.b64decode(parts[6])
    except ValueError:
        return False
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected))
    return hmac.compare_digest(digest, expected)


class UserDatabase:
    """Reads and atomically rewrites ``<root>/etc/passwd``."""

    def __init__(self, root: Path) -> None:
        self.path = root / "etc" / "passwd"

    def users(self) -> list[User]:
        out: list[User] = []
        for n, raw in enumerate(self.path.read_text().splitlines(), 1):
            if not raw.strip() or raw.startswith("#"):
                continue
            f = raw.split(":")
            if len(f) != 7:
                raise UserError(f"{self.path}:{n}: expected 7 fields, found {len(f)}")
            try:
                out.append(User(f[0], f[1], int(f[2]), int(f[3]), f[4], f[5], f[6]))
            except ValueError as exc:
                raise UserError(f"{self.path}:{n}: bad uid/gid") from exc
        return out

    def get(self, name: str) -> User | None:
        return next((u for u in self.users() if u.name == name), None)

    def authenticate(self, name: str, password: str, *, dev_mode: bool) -> User | None:
        user = self.get(name)
        if user is None:
            return None
        if not user.password_hash:
            return user if (dev_mode and user.uid == 0) else None
        return user if verify_password(password, user.password_hash) else None

    def add(self, name: str, password: str) -> User:
        if not name.isidentifier() or len(name) > 32:
            raise UserError(f"invalid user name: {name!r}")
        users = self.users()
        if any(u.name == name for u in users):
            raise UserError(f"user {name!r} already exists")
        uid = max([u.uid for u in users] + [999]) + 1
        user = User(name, hash_password(password), uid, uid, name, f"/home/{name}", "/bin/exosh")
        self._write([*users, user])
        return user

    def set_password(self, name: str, password: str) -> None:
        users = self.users()
        if not any(u.name == name for u in users):
            raise UserError(f"no such user: {name}")
        self._write(
            [replace(u, password_hash=hash_password(password)) if u.name == name else u
             for u in users]
        )

    def _write(self, users: list[User]) -> None:
        # Write-then-rename so a crash never leaves a truncated passwd file.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".passwd.")
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(u.line() + "\n" for u in users))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


# ------------------------------------------------------------ users as capability roots
#: What every other user holds: their home and /tmp read-write, the system's programs
#: and libraries read-only. ``{user}`` is the user's name.
USER_GRANTS = (
    "storage://home/{user}=READ,WRITE,EXECUTE,DUPLICATE,GRANT",
    "storage://tmp=READ,WRITE,DUPLICATE,GRANT",
    "storage://bin=READ,EXECUTE,DUPLICATE,GRANT",
    "storage://usr=READ,EXECUTE,DUPLICATE,GRANT",
    "storage://lib=READ,EXECUTE,DUPLICATE,GRANT",
    "storage://exo=READ,EXECUTE,DUPLICATE,GRANT",
    "storage://etc/motd=READ",
    "storage://etc/hostname=READ",
    "storage://etc/os-release=READ",
)
#: The administrator's policy: more capabilities for everyone or for named users.
GRANTS_FILE = "etc/exo/grants.toml"
#: Held to power the system off (``shutdown``, ``exo shutdown``): root's, or granted.
POWER = "device://power"


def session_grants(root: Path, user: User) -> list[Any] | None:
    """The capability set a login of ``user`` holds: ``None`` for root (every root
    capability), else ``USER_GRANTS`` plus what ``/etc/exo/grants.toml`` grants::

        [all]
        capabilities = ["storage://home/shared=READ"]
        [users.alice]
        capabilities = ["storage://home/shared=READ,WRITE", "device://power=WRITE"]

    A malformed policy grants nothing more (and says why): a typo must not lock
    everyone out, nor grant more than written.
    """
    from exo.kernel.manifest import ManifestError, parse_grant

    if user.uid == 0:
        return None
    grants = [parse_grant(g.format(user=user.name)) for g in USER_GRANTS]
    for text in _policy(root, user.name):
        try:
            grants.append(parse_grant(text))
        except ManifestError as exc:
            raise UserError(f"/{GRANTS_FILE}: {exc}") from None
    return grants


def _policy(root: Path, name: str) -> list[str]:
    import tomllib

    path = root / GRANTS_FILE
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"/{GRANTS_FILE}: {exc}") from None
    out: list[str] = []
    sections = [data.get("all", {}), data.get("users", {}).get(name, {})]
    for section in sections:
        caps = section.get("capabilities", []) if isinstance(section, dict) else None
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise UserError(f"/{GRANTS_FILE}: 'capabilities' must be a list of strings")
        out += caps
    return out
