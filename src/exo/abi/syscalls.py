"""The syscall table, as data: every request an Exo process or a ``exo`` command may send.

One row per syscall, in the spirit of gVisor's ``linux64.go``: its name, the channel it
arrives on (an app's bootstrap channel, or the kernel's control socket), its family (which
file of ``exo.kernel.syscalls`` serves it), its arguments and their types, the rights it
needs, the descriptors it takes and returns, and whether it is implemented. The kernel's
dispatcher validates every request against its row before a handler runs (types, missing
and unknown arguments, bounds, descriptor count), so handlers receive complete, typed
arguments; ``exo_std`` checks a call's name and argument names against the same row
before sending it; ``docs/syscalls.md`` is generated from it
(``python -m exo.abi.syscalls --markdown``). A test keeps the four in agreement.

Every bound is explicit, so validating the most hostile request is cheap: at most a few
thousand values (``MAX_REQUEST_VALUES``), each checked once, strings by length only.

Standard library only, plain classes with ``__slots__`` (no dataclasses, no runtime
``typing``): every application imports this at start (docs/ARCHITECTURE.md, "Boot budget").
"""

from __future__ import annotations

from exo.abi import MAX_FDS, MAX_MESSAGE
from exo.abi.rights import Rights

TYPE_CHECKING = False  # no typing import at run time: every app imports this
if TYPE_CHECKING:
    from typing import Any

# Argument kinds (what JSON value an argument must be).
INT = "int"
STR = "str"
BOOL = "bool"
TIMEOUT = "timeout"  # null (wait forever) or a finite number of seconds >= 0
LIST = "list"  # of ``item``
OBJECT = "object"  # with ``fields``, or free-form (checked by its handler)

# Where a request arrives.
BOOTSTRAP = "bootstrap"  # an Exo process's channel to the kernel (exo_std)
CONTROL = "control"  # the kernel's control socket (exo run / ps / shutdown)

# Status, as gVisor reports support for each Linux syscall.
IMPLEMENTED = "implemented"
PARTIAL = "partial"  # works, with the limits its note names
NOT_YET = "not yet"  # listed for its shape; the kernel answers NOT_IMPLEMENTED

FAMILIES = ("caps", "storage", "proc", "ipc", "kernel")

MAX_TIMEOUT = 86400.0  # a day: longer waits are "forever" (None), not a number to sleep on
# Handles, pids and tokens are any 64-bit integer: one that names nothing is refused by
# the kernel part that looks it up (InvalidHandle, no such process...), exactly as a
# stale one is, so its range gives no hint. Beyond 64 bits is an invalid argument.
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
COUNT_MAX = (1 << 31) - 1


class Arg:
    """One argument: its name and JSON kind, and the bounds a value must keep.

    ``lo``/``hi`` bound an int's value, a string's length (``hi`` only), a list's
    number of items or an object's number of keys. ``item`` describes a list's items,
    ``fields`` an object's. An optional argument that is absent or null takes
    ``default``."""

    __slots__ = ("default", "doc", "fields", "hi", "item", "kind", "lo", "name", "names",
                 "required")

    def __init__(self, name: str, kind: str, doc: str = "", *, required: bool = True,
                 lo: int = 0, hi: int = 0, item: Arg | None = None,
                 fields: tuple[Arg, ...] | None = None, default: Any = None) -> None:
        self.name = name
        self.kind = kind
        self.doc = doc
        self.required = required
        self.lo = lo
        self.hi = hi
        self.item = item
        self.fields = fields
        self.names = _names(fields) if fields is not None else frozenset()
        self.default = default

    def check(self, value: Any, where: str) -> Any:
        """``value`` if it is of this kind and within bounds (a timeout: as a float, at
        most a day); else TypeError (wrong kind) or ValueError (out of bounds)."""
        kind = self.kind
        if kind == INT:
            if type(value) is not int:
                raise TypeError(f"argument {where!r} must be an integer")
            if not self.lo <= value <= self.hi:
                raise ValueError(f"argument {where!r} must be in {self.lo}..{self.hi}")
            return value
        if kind == STR:
            if type(value) is not str:
                raise TypeError(f"argument {where!r} must be a string")
            if len(value) > self.hi:
                raise ValueError(f"argument {where!r} is longer than {self.hi} characters")
            return value
        if kind == BOOL:
            if type(value) is not bool:
                raise TypeError(f"argument {where!r} must be true or false")
            return value
        if kind == TIMEOUT:
            if value is None:
                return None
            # NaN would make a queue wait forever, and a huge value overflows a lock's
            # timeout: a finite number >= 0, at most a day.
            if type(value) not in (int, float) or not 0 <= value < float("inf"):
                raise TypeError(f"argument {where!r} must be null or a finite number >= 0")
            return min(float(value), MAX_TIMEOUT)
        if kind == LIST:
            if type(value) is not list:
                raise TypeError(f"argument {where!r} must be a list")
            if not self.lo <= len(value) <= self.hi:
                raise ValueError(f"argument {where!r} must hold {self.lo}..{self.hi} items")
            item = self.item
            if item is None:
                return value
            return [item.check(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if kind == OBJECT:
            if type(value) is not dict:
                raise TypeError(f"argument {where!r} must be an object")
            if self.fields is not None:  # the first unknown field ends the check
                return _check_fields(self.fields, self.names, value, where)
            if len(value) > self.hi:
                raise ValueError(f"argument {where!r} has more than {self.hi} fields")
            return value
        raise AssertionError(f"unknown argument kind {kind!r}")  # a bug in the table

    def describe(self) -> str:
        """The type as the documentation shows it."""
        kind = self.kind
        if kind == INT:
            if (self.lo, self.hi) == (I64_MIN, I64_MAX):
                return "int64"
            hi = "2³¹−1" if self.hi == COUNT_MAX else str(self.hi)
            return f"int {self.lo}..{hi}"
        if kind == STR:
            return f"str ≤ {self.hi}"
        if kind == TIMEOUT:
            return "null or seconds ≥ 0"
        if kind == LIST:
            inner = self.item.describe() if self.item is not None else "any"
            return f"list of {self.lo}..{self.hi} × ({inner})"
        if kind == OBJECT:
            if self.fields is None:
                return f"object ≤ {self.hi} fields"
            return "{" + ", ".join(f"{f.name}: {f.describe()}" for f in self.fields) + "}"
        return kind


def _names(args: tuple[Arg, ...]) -> frozenset[str]:
    return frozenset(a.name for a in args)


def _check_fields(args: tuple[Arg, ...], names: frozenset[str], given: dict[str, Any],
                  where: str = "") -> dict[str, Any]:
    """``given`` checked against ``args``: no unknown name, every required one present,
    each value checked; optional ones absent or null take their default."""
    for key in given:
        if key not in names:
            raise TypeError(f"unknown argument {(where + '.' if where else '') + key[:64]!r}")
    out: dict[str, Any] = {}
    for arg in args:
        name = arg.name
        value = given.get(name)
        if value is None and not arg.required:
            out[name] = arg.default
        elif name not in given:
            raise KeyError(f"{where}.{name}" if where else name)
        else:
            out[name] = arg.check(value, f"{where}.{name}" if where else name)
    return out


class Syscall:
    """One row of the table.

    ``rights`` says in words what the caller must hold; ``handle_rights``, where the
    need is a fixed set of rights on one handle argument, says it as data —
    ``(argument, rights)`` — and the dispatcher checks it before the handler runs.
    ``fds_in`` is the (least, most) descriptors the request carries, ``fds_out`` the
    most the reply carries."""

    __slots__ = ("args", "channel", "doc", "family", "fds_in", "fds_out", "handle_rights",
                 "name", "names", "note", "required", "result", "rights", "status")

    def __init__(self, name: str, family: str, args: tuple[Arg, ...] = (), *,
                 doc: str, result: str = "{}", rights: str = "—",
                 handle_rights: tuple[str, Rights] | None = None,
                 fds_in: tuple[int, int] = (0, 0), fds_out: int = 0,
                 status: str = IMPLEMENTED, note: str = "", channel: str = BOOTSTRAP) -> None:
        assert family in FAMILIES and status in (IMPLEMENTED, PARTIAL, NOT_YET)
        self.name = name
        self.family = family
        self.args = args
        self.doc = doc
        self.result = result
        self.rights = rights
        self.handle_rights = handle_rights
        self.fds_in = fds_in
        self.fds_out = fds_out
        self.status = status
        self.note = note
        self.channel = channel
        self.names = _names(args)  # exo_std: argument names a call may use
        self.required = frozenset(a.name for a in args if a.required)

    def validate(self, args: dict[str, Any]) -> dict[str, Any]:
        """The request's arguments, checked and completed (defaults filled in), or
        KeyError (a missing argument), TypeError (unknown or mistyped) or ValueError
        (out of bounds)."""
        if not self.args:
            if args:
                raise TypeError(f"{self.name} takes no arguments "
                                f"(got {next(iter(args))[:64]!r})")
            return args
        return _check_fields(self.args, self.names, args)

    def __repr__(self) -> str:
        return f"Syscall({self.name!r}, {self.family!r}, {self.status!r})"


def _id(name: str, doc: str) -> Arg:
    """A handle, pid or token argument."""
    return Arg(name, INT, doc, lo=I64_MIN, hi=I64_MAX)


def _handle(doc: str = "a handle the caller holds") -> Arg:
    return _id("handle", doc)


def _rights(doc: str) -> Arg:
    return Arg("rights", STR, doc, hi=256)


def _name(doc: str) -> Arg:
    # Bounded by the message only: the kernel's name parser refuses names past 4,096
    # bytes itself, and its refusal is audited like any other denied request.
    return Arg("name", STR, doc, hi=MAX_MESSAGE)


_CAP_RESULT = "{handle, resource, rights}"

TABLE: tuple[Syscall, ...] = (
    # ------------------------------------------------------------------ caps
    Syscall("getpid", "caps", doc="The caller's Exo pid (the null syscall).",
            result="{pid}"),
    Syscall("handles", "caps", (
        Arg("start", INT, "index of the first row; absent: the whole table",
            required=False, hi=COUNT_MAX),),
            doc="The caller's handles, or one page of at most 48 KiB of them from "
                "`start` (an empty page: the end).",
            result="[{handle, resource, rights}]",
            status=PARTIAL,
            note="without `start` the whole table, which may not fit in one reply "
                 "(REPLY_TOO_LARGE); exo_std asks page by page"),
    Syscall("request", "caps", (
        _name("resource name, e.g. storage://home/a/x.txt"),
        _rights("rights wanted, e.g. READ,WRITE")),
            doc="A new capability derived from a held one that covers `name`.",
            rights="a held capability covering `name` with `rights` and GRANT",
            result=_CAP_RESULT),
    Syscall("duplicate", "caps", (_handle(), _rights("rights of the copy (⊆ held)")),
            doc="A new handle on the same resource with fewer (or the same) rights.",
            rights="DUPLICATE; `rights` ⊆ the handle's",
            handle_rights=("handle", Rights.DUPLICATE), result=_CAP_RESULT),
    Syscall("revoke", "caps", (_handle(),),
            doc="Revoke every capability derived from the handle, in every process.",
            rights="a valid handle", result="{count}"),
    Syscall("close", "caps", (_handle(),), doc="Release the handle.",
            rights="a valid handle"),
    Syscall("accept_capabilities", "caps", (
        Arg("limit", INT, "0: refuse every capability sent by another process",
            hi=COUNT_MAX),),
            doc="Bound how many capabilities from other processes the caller holds "
                "(at most its `received` quota).",
            result="{limit, quota}"),
    # ------------------------------------------------------------------ ipc
    Syscall("send_capability", "ipc", (_handle(), _id("pid", "receiver")),
            doc="Move the handle to another process's inbox (the sender's dies).",
            rights="TRANSFER; the receiver accepts it (its `received` and `inbox` quotas)",
            handle_rights=("handle", Rights.TRANSFER)),
    Syscall("recv_capability", "ipc", (
        Arg("timeout", TIMEOUT, "seconds to wait; null: forever", required=False),),
            doc="Wait for a capability sent to the caller.",
            result="{handle, resource, rights, from}"),
    Syscall("transfer_out", "ipc", (
        _handle(), _id("to", "the only process that may redeem the token")),
            doc="The handle leaves the caller for a one-use token to carry in a channel "
                "message.",
            rights="TRANSFER; the `in_flight` quota",
            handle_rights=("handle", Rights.TRANSFER), result="{token}"),
    Syscall("transfer_in", "ipc", (_id("token", "from transfer_out"),),
            doc="Redeem a token: the capability joins the caller's space.",
            rights="the caller is the token's receiver", result=_CAP_RESULT),
    Syscall("agent_connect", "ipc", (
        Arg("name", STR, "the agent's name, e.g. ai-res (agent://NAME)", hi=64),),
            doc="A new encrypted connection to a running agent: one channel endpoint, "
                "relayed by AI-Core (exo.agents.core) to the agent's process.",
            rights="SEND on a held capability covering agent://NAME",
            result="{agent, resource}", fds_out=6, status=PARTIAL,
            note="the endpoint's 6 descriptors come with the reply (exo_std.ai); the "
                 "agents start in the DEFERRED boot phase: until then NOT_FOUND"),
    Syscall("open_service", "ipc", (_name("ipc://NAME of a loaded module's service"),),
            doc="A channel to a module's service: module frames (request id and body) in, "
                "answers out; the kernel routes each to the serving version.",
            rights="SEND on a capability covering `name`; at most 16 per process",
            result="{service, module, version}", fds_out=6),
    # ------------------------------------------------------------------ storage
    Syscall("open", "storage", (
        _name("storage:// name of a file or directory"),
        _rights("READ, WRITE or both"),
        Arg("create", BOOL, "create the file if missing", required=False, default=False),
        Arg("truncate", BOOL, "empty the file", required=False, default=False),
        Arg("append", BOOL, "every write at the end", required=False, default=False)),
            doc="Open a file through a capability; the descriptor comes with the reply.",
            rights="a covering capability with READ/WRITE as asked; create and truncate "
                   "need WRITE; the `files` quota",
            result="{resource, rights, revocable}", fds_out=1, status=PARTIAL,
            note="the descriptor is on the kernel's revocable FUSE file server; on a host "
                 "without FUSE it is the real file's, and `revocable` is false"),
    Syscall("listdir", "storage", (_name("storage:// name of a directory"),),
            doc="The names in a directory.", rights="READ on a covering capability",
            result="[name]"),
    # ------------------------------------------------------------------ proc
    Syscall("spawn", "proc", (
        Arg("argv", LIST, "program and arguments", lo=1, hi=1024,
            item=Arg("arg", STR, hi=32 * 1024)),
        Arg("caps", LIST, "capabilities the child gets, derived from the caller's",
            required=False, hi=256, default=(),
            item=Arg("cap", OBJECT, fields=(_handle(), _rights("the child's rights")))),
        Arg("channels", LIST, "descriptors per channel endpoint, after stdio",
            required=False, hi=MAX_FDS - 3, default=(),
            item=Arg("count", INT, lo=1, hi=8)),
        Arg("limits", OBJECT, "memory, pids, cpu and quotas, at most the caller's",
            required=False, hi=16)),
            doc="Start a sandboxed child holding only the capabilities passed.",
            rights="DUPLICATE on each handle in `caps`; rights ⊆ held; the `children` "
                   "quota",
            result="{pid}", fds_in=(3, MAX_FDS),
            note="descriptors: stdin, stdout, stderr, then each channel's"),
    Syscall("wait", "proc", (_id("pid", "a child of the caller"),),
            doc="Wait for a child to exit.", rights="the caller is the parent",
            result="{status}"),
    Syscall("exit", "proc", doc="End the caller (its sandbox is killed).", result="{}"),
    Syscall("kill", "proc", (_id("pid", "a child of the caller"),
                             Arg("signal", INT, "signal number", lo=1, hi=64)),
            doc="Signal a child (SIGSTOP/SIGCONT stop and resume it).",
            rights="the caller is the parent", result="{}"),
    # ------------------------------------------------------------------ control socket
    Syscall("ping", "kernel", doc="Is a kernel running here?", result="{pid, boot_id}",
            rights="the user who booted the kernel (socket mode 0600)", channel=CONTROL),
    Syscall("ps", "proc", doc="The process table.", result="[row]",
            rights="the user who booted the kernel", channel=CONTROL),
    Syscall("shutdown", "kernel", doc="Stop every process and the kernel.",
            rights="the user who booted the kernel", channel=CONTROL),
    Syscall("run", "proc", (
        Arg("argv", LIST, "program and arguments", lo=1, hi=1024,
            item=Arg("arg", STR, hi=32 * 1024)),
        Arg("caps", LIST, "grants NAME=RIGHTS", required=False, hi=1024, default=(),
            item=Arg("grant", STR, hi=4096 + 256)),
        Arg("manifest", OBJECT, "a parsed manifest", required=False, hi=16),
        Arg("manifest_path", STR, "where the manifest came from (for errors)",
            required=False, hi=4096),
        Arg("cwd", STR, "working directory, an Exo path the capabilities cover (default /)",
            required=False, hi=4096)),
            doc="Run a sandboxed program with the caller's stdio; the reply comes when it "
                "exits (hanging up kills it).",
            rights="the user who booted the kernel", result="{status, pid}",
            fds_in=(3, 3), channel=CONTROL),
    # module manager (exo.modules): exo module load/list/upgrade/rollback/unload
    Syscall("module_load", "kernel", (
        Arg("spec", STR, "a module package's path, or the name of one already kept", hi=4096),),
            doc="Verify a signed module package and start it (a new version of a running "
                "module is kept for upgrade).",
            rights="the user who booted the kernel", result="{name, version, started, message}",
            channel=CONTROL),
    Syscall("module_list", "kernel", doc="Loaded modules: versions, traffic split, health.",
            rights="the user who booted the kernel", result="[row]", channel=CONTROL),
    Syscall("module_upgrade", "kernel", (
        Arg("name", STR, "module name", hi=64),
        Arg("version", STR, "version to move to", hi=64),
        Arg("canary", INT, "first share of traffic, percent", required=False, lo=1, hi=100,
            default=10),
        Arg("step", INT, "share added each interval, percent", required=False, lo=0,
            hi=100, default=30),
        Arg("interval", TIMEOUT, "seconds between steps", required=False, default=0.5)),
            doc="Start a version beside the running one, hand state over, shift traffic "
                "gradually; rolls back by itself on failed health or errors.",
            rights="the user who booted the kernel",
            result="{name, from, to, rolled_back, swap_ms, message}", channel=CONTROL),
    Syscall("module_rollback", "kernel", (Arg("name", STR, "module name", hi=64),),
            doc="Back to the version before the last upgrade, all traffic at once.",
            rights="the user who booted the kernel", result="{name, from, to, message}",
            channel=CONTROL),
    Syscall("module_unload", "kernel", (Arg("name", STR, "module name", hi=64),),
            doc="Drain and stop every version of a module.",
            rights="the user who booted the kernel", result="{name, message}",
            channel=CONTROL),
)

#: Rows by name, per channel.
SYSCALLS: dict[str, Syscall] = {s.name: s for s in TABLE if s.channel == BOOTSTRAP}
CONTROL_OPS: dict[str, Syscall] = {s.name: s for s in TABLE if s.channel == CONTROL}


def markdown() -> str:
    """``docs/syscalls.md``: the table, as a newcomer reads it."""
    out = ["# Syscalls",
           "",
           "Generated from `exo.abi.syscalls.TABLE` by "
           "`python -m exo.abi.syscalls --markdown > docs/syscalls.md`; do not edit by "
           "hand (`tests/unit/test_syscall_table.py` fails when this file and the table "
           "differ). A request is `{\"id\", \"op\", \"args\"}`; the kernel checks "
           "`args` against the row before a handler runs. A refusal is "
           "`{\"id\", \"ok\": false, \"error\", \"code\", \"message\"}` with a code "
           "below.",
           ""]
    for channel, title in ((BOOTSTRAP, "Bootstrap channel (exo_std)"),
                           (CONTROL, "Control socket (exo run, ps, shutdown)")):
        out += [f"## {title}", "",
                "| syscall | family | status | arguments | rights | fds in/out | result |",
                "|---|---|---|---|---|---|---|"]
        for s in TABLE:
            if s.channel != channel:
                continue
            args = "<br>".join(
                f"`{a.name}`{'' if a.required else '?'}: {a.describe()}" for a in s.args
            ) or "—"
            lo, hi = s.fds_in
            fds_in = str(lo) if lo == hi else f"{lo}..{hi}"
            status = s.status + (f": {s.note}" if s.note and s.status != IMPLEMENTED else "")
            out.append(f"| `{s.name}` | {s.family} | {status} | {args} | {s.rights} "
                       f"| {fds_in}/{s.fds_out} | `{s.result}` |")
        out.append("")
        for s in TABLE:
            if s.channel == channel:
                line = f"- `{s.name}`: {s.doc}"
                if s.note and s.status == IMPLEMENTED:
                    line += f" ({s.note})"
                out.append(line)
        out.append("")
    from exo.abi.errors import MEANING

    out += ["## Error codes (`exo.abi.ErrorCode`)", "", "| code | name | meaning |",
            "|---|---|---|"]
    out += [f"| {c.value} | `{c.name}` | {text} |" for c, text in MEANING.items()]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m exo.abi.syscalls --markdown")
    sys.stdout.write(markdown())
