"""Who is logged in and what they hold; how a session ends or changes hands.

A ``Session`` is the shell's view of a login the kernel keeps (``exo.kernel.sessions``):
the user, the capability set the login derived from the user's root set
(``exo.kernel.users.session_grants``), and the token naming the kernel's session. The
shell asks the kernel what the session holds, and starts every process under the token:
the kernel derives the process's capabilities from the session's set and refuses the
rest, and runs it as the session's unprivileged host uid. The shell's own checks only
word the refusal first.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from exo.kernel.api import KernelApi
    from exo.kernel.caps import Rights
    from exo.kernel.manifest import Grant
    from exo.kernel.sessions import KernelSession


# Plain classes, not dataclasses: each @dataclass costs ~1.3 ms at import, on the boot path.
class Session:
    """Who is logged in, and the capabilities the login gave them.

    ``grants`` is the session's root set (``exo.kernel.users.session_grants``); ``None``
    is root's, which holds every root capability. Whatever the shell does for the user
    and everything it starts is checked against this set first: a user's shell never
    asks the kernel for more than the administrator granted the user.
    """

    __slots__ = ("_kernel", "grants", "home", "token", "uid", "user")

    def __init__(self, user: str = "root", uid: int = 0, home: str = "/home/root",
                 grants: list[Grant] | None = None, token: str | None = None) -> None:
        self.user = user
        self.uid = uid
        self.home = home
        self.grants = grants
        self.token = token
        self._kernel: KernelApi | None = None

    @classmethod
    def of(cls, kernel: KernelApi, ks: KernelSession) -> Session:
        """The shell's view of the kernel's session ``ks``."""
        session = cls(ks.user, ks.uid, ks.home, ks.grants, ks.token)
        session._kernel = kernel
        return session

    def attach(self, kernel: KernelApi) -> None:
        """Make sure the kernel keeps this session (one built by hand, as tests and
        script mode do, gets a kernel session holding exactly its ``grants``)."""
        if self._kernel is None:
            self._kernel = kernel
        if self.token is None:
            self.token = kernel.open_session(self.user, self.uid, self.home,
                                             self.grants).token

    def end(self) -> None:
        """Logout: the kernel revokes everything derived from the session's set."""
        if self._kernel is not None and self.token is not None:
            self._kernel.end_session(self.token)

    def holds(self, name: str, rights: str | Rights) -> bool:
        """Whether a capability of the session covers ``name`` with ``rights``: the
        kernel's answer when the session is attached."""
        if self._kernel is not None and self.token is not None:
            return self._kernel.session_holds(self.token, name, str(rights) if isinstance(
                rights, str) else rights.format())
        if self.grants is None:
            return True
        from exo.kernel.caps import ResourceName, Rights

        try:
            want, wanted = ResourceName.parse(name), Rights.parse(rights)
        except ValueError:  # a name no capability can cover (a NUL, too long...)
            return False
        return any(g.name.covers(want) and wanted in g.rights for g in self.grants)

    def require(self, grant: Grant) -> None:
        """Raise ``PermissionError`` unless the session holds ``grant``."""
        if not self.holds(str(grant.name), grant.rights):
            raise PermissionError(f"{grant}: not held by this session (user {self.user}); "
                                  "an administrator can grant it in /etc/exo/grants.toml")

    def check_path(self, exo_path: str, mode: str) -> None:
        """The shell's own file access for the user: ``mode`` is ``read``, ``write`` or
        ``list`` (a directory's names: allowed on the way to anything the user holds)."""
        if self.grants is None:
            return
        name = "storage://" + exo_path.strip("/")
        if self.holds(name, "WRITE" if mode == "write" else "READ"):
            return
        if mode == "list":
            prefix = exo_path.rstrip("/") + "/"
            if any(g.name.scheme == "storage" and ("/" + g.name.path).startswith(prefix)
                   for g in self.grants):
                return
        raise PermissionError(f"{exo_path}: permission denied (user {self.user} holds no "
                              f"capability to {mode} it)")


class ShellExit(Exception):
    """Raised by ``shutdown`` (and by ``exit`` in a script): control flow, not an error."""

    def __init__(self, status: int) -> None:
        self.status = status


class Logout(ShellExit):
    """``exit``, ``logout`` or ^D: the session ends; on a terminal the login prompt returns."""


class SwitchUser(Exception):
    """``su``: the front end runs a shell for ``session`` until it logs out."""

    def __init__(self, session: Session) -> None:
        self.session = session
