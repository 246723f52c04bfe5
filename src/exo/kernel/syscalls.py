"""The syscall server: one thread per process reads its bootstrap channel.

A syscall blocks only its caller's thread (``wait``, ``recv_capability``), exactly
as a blocking system call would. Every request is validated; a bad one gets an
error reply and the kernel stays up. The bootstrap channel reporting its peer gone
(the ring's liveness socket hung up: the kernel holds no copy of the child's end) is
how death is detected without polling.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import stat
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from exo.abi import PARENT_PID_ENV, ProtocolError, encode_message
from exo.kernel.caps import CapabilityError, ResourceName, Rights
from exo.kernel.caps.errors import CapabilityDenied, QuotaExceeded
from exo.kernel.fairshare import Meter
from exo.kernel.manifest import Limits
from exo.sandbox.errors import SandboxError

if TYPE_CHECKING:
    from exo.kernel.kernel import Kernel
    from exo.kernel.process import ExoProcess

Handler = Callable[["Kernel", "ExoProcess", dict[str, Any], list[int]],
                   tuple[Any, list[int]]]
HANDLERS: dict[str, Handler] = {}


class SyscallError(Exception):
    """A request the kernel refuses for a reason other than capabilities."""


def syscall(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


def serve_process(kernel: Kernel, proc: ExoProcess) -> threading.Thread:
    t = threading.Thread(target=_serve, args=(kernel, proc), name=f"exo-sys-{proc.pid}",
                         daemon=True)
    t.start()
    return t


# msgspec's JSON codec on the kernel's side of every bootstrap channel: ~0.15 µs to decode
# or encode a null syscall's message where the standard library takes ~2 µs (this module
# is off the boot path, and so is msgspec). Decoding is untyped, into the same dicts,
# lists and scalars as json.loads: _dispatch and the handlers check every value as
# before. It is stricter than json.loads (no NaN or Infinity literals, integers within
# 64 bits): such requests get a ProtocolError reply instead of a handler's refusal.
_decode = msgspec.json.Decoder().decode
_msgspec_encode = msgspec.json.Encoder().encode


def _encode(reply: Any) -> bytes:
    """A reply's bytes. What msgspec cannot encode — strings with lone surrogates (file
    names), integers past 64 bits — goes through the standard library, so every reply
    the JSON encoder accepted before is still sent."""
    try:
        return _msgspec_encode(reply)
    except (TypeError, ValueError, OverflowError):
        return encode_message(reply)


def _serve(kernel: Kernel, proc: ExoProcess) -> None:
    """Serve one process until it is gone. Nothing a request contains ends this loop:
    a malformed message gets a ProtocolError reply, a failing handler an error reply.
    Each request is charged to the process's fair share of the kernel's time
    (``exo.kernel.fairshare``): a process in debt waits before its next request."""
    channel = proc.channel
    assert channel is not None
    channel.use_codec(_decode, _encode)
    share = kernel.fair_share
    # Charges this thread's CPU time continuously, the GIL-free spin before a futex sleep
    # included (not charging the spin was measured: a flooding process then took 20-70x
    # more of a well-behaved app's null syscall p99 in bench/isolation.py); it settles
    # every 0.2 ms of wall time, not at every request (exo.kernel.fairshare.Meter).
    meter = Meter(share, proc.pid)
    pid = proc.pid
    try:
        while True:
            try:
                got = channel.recv()
            except ProtocolError as exc:
                share.seen(pid)
                reply: dict[str, Any] = {"id": None, "ok": False, "error": "ProtocolError",
                                         "message": str(exc)}
                if not _reply(channel, reply, []):
                    break
                meter.pay(meter.tick())
                continue
            except Exception:  # the channel is closed under us (process reclaimed)
                break
            if got is None:
                break  # the process is gone: its reaper reclaims everything
            share.seen(pid)
            msg, fds = got
            reply, out_fds = _dispatch(kernel, proc, msg, fds)
            if not _reply(channel, reply, out_fds):
                break
            meter.pay(meter.tick())
    finally:
        share.forget(pid)
        channel.close()


def _reply(channel: Any, reply: dict[str, Any], out_fds: list[int]) -> bool:
    """Send ``reply`` (and close our copies of ``out_fds``); False: the channel is gone."""
    try:
        try:
            channel.send(reply, out_fds)
        except ProtocolError as exc:  # the result does not fit in one message
            channel.send({"id": reply.get("id"), "ok": False, "error": "ReplyTooLarge",
                          "message": str(exc)})
    except Exception:
        return False
    finally:
        for fd in out_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
    return True


# What a handler may raise to refuse a request: the app gets the class name and the
# message. Anything else is a kernel bug: logged with its traceback, answered as
# InternalError, and the thread serves the next request.
_REFUSALS = (CapabilityError, SyscallError, OSError, ValueError, TypeError, KeyError,
             LookupError, TimeoutError, OverflowError, SandboxError)


def _dispatch(kernel: Kernel, proc: ExoProcess, msg: dict[str, Any],
              fds: list[int]) -> tuple[dict[str, Any], list[int]]:
    req_id = msg.get("id")
    if not isinstance(req_id, int | str | None) or isinstance(req_id, bool):
        req_id = None
    op, args = msg.get("op"), msg.get("args", {})
    try:
        if not isinstance(op, str) or not isinstance(args, dict):
            raise SyscallError("request needs an 'op' string and an 'args' object")
        handler = HANDLERS.get(op)
        if handler is None:
            raise SyscallError(f"unknown syscall {op[:64]!r}")
        result, out_fds = handler(kernel, proc, args, fds)
        return {"id": req_id, "ok": True, "result": result}, out_fds
    except _REFUSALS as exc:
        kind = type(exc).__name__
        if isinstance(exc, KeyError):
            message = f"missing argument {str(exc.args[0])[:64]!r}"
        else:
            message = str(exc) or kind
        return {"id": req_id, "ok": False, "error": kind, "message": message[:1024]}, []
    except Exception as exc:
        import traceback  # only on this path: keeps the boot imports lean

        name = op[:64] if isinstance(op, str) else "?"
        kernel.log(f"syscall {name} from pid {proc.pid} failed in the kernel: "
                   + "".join(traceback.format_exception(exc)).rstrip())
        return {"id": req_id, "ok": False, "error": "InternalError",
                "message": f"the kernel failed to serve {name!r} ({type(exc).__name__}); "
                           "see the kernel log"}, []
    finally:
        for fd in fds:  # descriptors a handler did not take (and clear) are closed
            with contextlib.suppress(OSError):
                os.close(fd)


def _cap_result(kernel: Kernel, pid: int, handle: int) -> dict[str, Any]:
    cap = kernel.caps.check(pid, handle)
    return {"handle": handle, "resource": str(cap.resource), "rights": int(cap.rights)}


def _int(args: dict[str, Any], key: str) -> int:
    value = args[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"argument {key!r} must be an integer")
    return value


MAX_TIMEOUT = 86400.0  # a day: longer waits are "forever" (None), not a number to sleep on


def _timeout(args: dict[str, Any], key: str = "timeout") -> float | None:
    """An optional wait in seconds: null (forever) or a finite number >= 0 (NaN would
    make a queue wait forever, and a huge value overflows the lock's timeout)."""
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not (
            0 <= value < float("inf")):
        raise TypeError(f"argument {key!r} must be null or a finite number >= 0")
    return min(float(value), MAX_TIMEOUT)


def _str(args: dict[str, Any], key: str) -> str:
    value = args[key]
    if not isinstance(value, str):
        raise TypeError(f"argument {key!r} must be a string")
    return value


# ---------------------------------------------------------------- capabilities
@syscall("getpid")
def _getpid(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
            ) -> tuple[Any, list[int]]:
    return {"pid": proc.pid}, []


#: Bytes of rows one page of ``handles`` carries: a reply must fit in one 64 KiB message,
#: and a table of 4,096 handles with 4 KiB names does not.
HANDLES_PAGE_BYTES = 48 * 1024


@syscall("handles")
def _handles(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
             ) -> tuple[Any, list[int]]:
    """The caller's handles; with ``start``, one page of them from that index (an empty
    page: the end). Without it, the whole table, which may be ReplyTooLarge."""
    rows = [{"handle": i.handle, "resource": str(i.resource), "rights": int(i.rights)}
            for i in kernel.caps.handles(proc.pid)]
    if args.get("start") is None:
        return rows, []
    start = _int(args, "start")
    if start < 0:
        raise ValueError("argument 'start' must be >= 0")
    page: list[dict[str, Any]] = []
    size = 0
    for row in rows[start:]:
        size += len(str(row["resource"])) + 64
        if page and size > HANDLES_PAGE_BYTES:
            break
        page.append(row)
    return page, []


@syscall("request")
def _request(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
             ) -> tuple[Any, list[int]]:
    handle = kernel.caps.request(proc.pid, _str(args, "name"), _str(args, "rights"))
    return _cap_result(kernel, proc.pid, handle), []


@syscall("duplicate")
def _duplicate(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
               ) -> tuple[Any, list[int]]:
    handle = kernel.caps.duplicate(proc.pid, _int(args, "handle"), _str(args, "rights"))
    return _cap_result(kernel, proc.pid, handle), []


@syscall("revoke")
def _revoke(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
            ) -> tuple[Any, list[int]]:
    return {"count": kernel.caps.revoke(proc.pid, _int(args, "handle"))}, []


@syscall("close")
def _close(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
           ) -> tuple[Any, list[int]]:
    kernel.caps.close(proc.pid, _int(args, "handle"))
    return {}, []


@syscall("send_capability")
def _send_capability(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
                     ) -> tuple[Any, list[int]]:
    """Move a handle towards another process; it joins that space when received.

    Until the receiver calls ``recv_capability`` the capability is in flight (in no space),
    in the receiver's bounded inbox: a sender can neither fill the receiver's handle table
    nor make the kernel queue without bound. A receiver that refuses capabilities, or
    whose inbox or ``received`` quota is full, makes the send fail and the sender keeps
    its handle.
    """
    handle = _int(args, "handle")
    kernel.caps.check(proc.pid, handle, Rights.TRANSFER)
    target = kernel.processes.get(_int(args, "pid"))
    if target.status is not None:
        raise LookupError(f"process {target.pid} has exited")
    refusal: CapabilityError | None = None
    waiting, inbox = target.inbox.qsize(), target.limits.quotas.inbox
    if target.pid != proc.pid:
        held, accepts = kernel.caps.received(target.pid)
        if accepts == 0:
            refusal = CapabilityDenied(f"process {target.pid} refuses capabilities from "
                                       "other processes")
        elif held + waiting >= accepts:
            refusal = QuotaExceeded("received", accepts,
                                    f"process {target.pid} holds {held} capabilities from "
                                    f"other processes and has {waiting} waiting to be received")
    if refusal is None and waiting >= inbox:
        refusal = QuotaExceeded("inbox", inbox, f"process {target.pid} has {waiting} "
                                "capabilities waiting to be received")
    if refusal is not None:  # checked before the handle leaves: the sender keeps it
        kernel.caps.audit.record("deny", pid=proc.pid, handle=handle, peer=target.pid,
                                 reason=f"send_capability: {type(refusal).__name__}: "
                                        f"{refusal}")
        raise refusal
    cap = kernel.caps.begin_transfer(proc.pid, handle)
    try:
        target.deliver(proc.pid, cap)
    except BaseException:
        # Only a concurrent sender filling the inbox in between gets here; the handle
        # number is gone, so the capability is released rather than returned.
        kernel.caps.cancel_transfer(cap)
        raise
    return {}, []


@syscall("recv_capability")
def _recv_capability(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
                     ) -> tuple[Any, list[int]]:
    timeout = _timeout(args)
    try:
        sender, cap = proc.inbox.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError("no capability arrived before the timeout") from None
    if cap is None:  # the process exited while waiting (ExoProcess.close_inbox)
        proc.close_inbox()
        raise LookupError(f"process {proc.pid} has exited")
    try:
        handle = kernel.caps.complete_transfer(cap, proc.pid, received=sender != proc.pid)
    except QuotaExceeded:
        # The receiver lowered what it accepts after this was sent: the capability waits
        # again (at the back of the inbox) for the receiver to make room.
        try:
            proc.deliver(sender, cap)
        except QuotaExceeded:
            kernel.caps.cancel_transfer(cap)
        raise
    result = _cap_result(kernel, proc.pid, handle)
    result["from"] = sender
    return result, []


@syscall("accept_capabilities")
def _accept_capabilities(kernel: Kernel, proc: ExoProcess, args: dict[str, Any],
                         fds: list[int]) -> tuple[Any, list[int]]:
    """Bound how many capabilities from other processes the caller holds (0: refuse all).

    At most the ``received`` quota; already-held ones stay. Returns the bound in force.
    """
    limit = _int(args, "limit")
    ceiling = proc.limits.quotas.received
    if limit < 0:
        raise ValueError("argument 'limit' must be at least 0")
    limit = min(limit, ceiling)
    kernel.caps.set_max_received(proc.pid, limit)
    return {"limit": limit, "quota": ceiling}, []


# ---------------------------------------------------------------- storage
# Every path is resolved from the kernel's pinned descriptor of the Exo tree, the
# capability's own part included, with beneath.STRICT: no symlink anywhere (a link an app
# planted in its own directory cannot lead the kernel, which runs as root, anywhere), no
# mount crossing, nothing above the tree. A storage:// name has no ``..`` (the parser
# resolves it), so what is opened is exactly what the capability names.
def open_beneath(kernel: Kernel, res: ResourceName, flags: int, mode: int = 0o644) -> int:
    """Open the Exo path of ``res`` (a regular file or directory only; never blocks)."""
    from exo.kernel import beneath

    try:
        return beneath.open_file(kernel.files.tree_fd, res.path, flags, mode, beneath.STRICT)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PermissionError(errno.EACCES, f"{res}: a symbolic link is on the path "
                                  "(the kernel never follows links)") from None
        if exc.errno == errno.EXDEV:
            raise PermissionError(errno.EACCES, f"{res}: the path crosses a mount or leaves "
                                  "the Exo tree") from None
        raise OSError(exc.errno, f"{res}: {exc.strerror}") from None


def _covering(kernel: Kernel, pid: int, res: ResourceName, want: Rights) -> tuple[int, Any]:
    """The handle whose capability covers ``res`` with ``want``, most specific first."""
    best: tuple[int, Any] | None = None
    for info in kernel.caps.handles(pid):
        if info.resource.covers(res) and (info.rights & want) == want and (
            best is None or len(info.resource.path) > len(best[1].resource.path)
        ):
            best = (info.handle, info)
    if best is None:
        raise PermissionError(errno.EACCES, f"no capability grants {want.format()} on {res}")
    return best


@syscall("open")
def _open(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
          ) -> tuple[Any, list[int]]:
    res = ResourceName.parse(_str(args, "name"))
    if res.scheme != "storage":
        raise SyscallError(f"open: {res} is not a storage:// name")
    want = Rights.parse(_str(args, "rights")) & (Rights.READ | Rights.WRITE)
    if not want:
        raise SyscallError("open: rights must include READ or WRITE")
    # Creating and truncating change the file: WRITE, checked before anything is touched.
    changes = [what for what in ("create", "truncate") if args.get(what)]
    if changes and Rights.WRITE not in want:
        raise PermissionError(errno.EACCES, f"open: {' and '.join(changes)} of {res} needs "
                              "WRITE")
    handle, _ = _covering(kernel, proc.pid, res, want)
    kernel.files.check_open_quota(proc.pid)
    flags = {Rights.READ: os.O_RDONLY, Rights.WRITE: os.O_WRONLY}.get(want, os.O_RDWR)
    if args.get("create"):
        flags |= os.O_CREAT
    if args.get("truncate"):
        flags |= os.O_TRUNC
    if args.get("append"):
        flags |= os.O_APPEND
    pin = kernel.caps.pin(proc.pid, handle, want)
    try:
        fd = open_beneath(kernel, res, flags)
    except BaseException:
        kernel.caps.unpin(pin)
        raise
    if stat.S_ISDIR(os.fstat(fd).st_mode) and want & Rights.WRITE:
        os.close(fd)
        kernel.caps.unpin(pin)
        raise IsADirectoryError(errno.EISDIR, f"{res}: is a directory")
    # The process gets a descriptor on the kernel's FUSE file server, not the real file,
    # so revoking the capability cuts it off from its next read/write (docs/revocable-files.md).
    # Without FUSE the real fd is passed and the reply says the file is not revocable.
    mount_dir = kernel.root / "var" / "run" / f"files-{kernel.boot_id}"
    try:
        out_fd, revocable = kernel.files.open_revocable(proc, pin, fd, flags,
                                                        mount_dir=mount_dir, log=kernel.log)
    except BaseException:
        os.close(fd)
        kernel.caps.unpin(pin)
        raise
    return {"resource": str(res), "rights": int(want), "revocable": revocable}, [out_fd]


@syscall("listdir")
def _listdir(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
             ) -> tuple[Any, list[int]]:
    res = ResourceName.parse(_str(args, "name"))
    if res.scheme != "storage":
        raise SyscallError(f"listdir: {res} is not a storage:// name")
    _covering(kernel, proc.pid, res, Rights.READ)
    fd = open_beneath(kernel, res, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return sorted(os.listdir(fd)), []
    finally:
        os.close(fd)


# ---------------------------------------------------------------- processes
@syscall("spawn")
def _spawn(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
           ) -> tuple[Any, list[int]]:
    argv = args["argv"]
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise TypeError("argument 'argv' must be a non-empty list of strings")
    caps = args.get("caps", [])
    if not isinstance(caps, list):
        raise TypeError("argument 'caps' must be a list")
    groups = args.get("channels", [])
    if not isinstance(groups, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 8 for n in groups):
        raise TypeError("argument 'channels' must be a list of descriptor counts")
    if len(fds) != 3 + sum(groups):
        raise SyscallError("spawn needs stdin, stdout, stderr and each channel's descriptors")
    # The child receives capabilities derived from ones the caller holds (revoking
    # the caller's revokes the child's): it can never give more than it has.
    wanted: list[tuple[int, Rights]] = []
    for entry in caps:
        if not isinstance(entry, dict):
            raise TypeError("each entry of 'caps' must be an object")
        handle, want = _int(entry, "handle"), Rights.parse(_str(entry, "rights"))
        kernel.caps.check(proc.pid, handle, Rights.DUPLICATE)
        wanted.append((handle, want))

    def derive(child_pid: int) -> None:
        for handle, want in wanted:
            kernel.caps.delegate(proc.pid, handle, child_pid, want)

    # Limits the caller asks for the child; unnamed ones are the caller's own. Either way
    # the process manager caps each at the caller's value (a child never holds more).
    asked = args.get("limits")
    limits = proc.limits if asked is None else Limits.from_request(asked, proc.limits)

    extra, env, at = fds[3:], [], 0
    for n in groups:  # the child finds them in EXO_CHANNEL_FDS, at the same numbers
        env.append(",".join(str(fd) for fd in extra[at:at + n]))
        at += n
    child_env = {PARENT_PID_ENV: str(proc.pid)}  # the peer of inherited channel endpoints
    if env:
        child_env["EXO_CHANNEL_FDS"] = ";".join(env)
    child = kernel.processes.spawn(argv, [], stdio=(fds[0], fds[1], fds[2]),
                                   parent=proc.pid, limits=limits, derive=derive,
                                   extra_fds=tuple(extra), env=child_env)
    for fd in fds:
        os.close(fd)
    fds.clear()
    return {"pid": child.pid}, []


@syscall("transfer_out")
def _transfer_out(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
                  ) -> tuple[Any, list[int]]:
    """A handle leaves the caller to travel in a channel message; returns a token.

    ``to`` names the receiver (the process at the other end of the channel): only it can
    redeem the token.
    """
    handle, to = _int(args, "handle"), _int(args, "to")
    receiver = kernel.processes.get(to) if to != proc.pid else proc
    if receiver.status is not None:
        raise LookupError(f"process {to} has exited")
    token = kernel.in_flight.put(proc.pid, handle, to, limit=proc.limits.quotas.in_flight)
    return {"token": token}, []


@syscall("transfer_in")
def _transfer_in(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
                 ) -> tuple[Any, list[int]]:
    """Redeem a token that arrived in a message: the capability joins our space.

    Only the receiver named by ``transfer_out`` may; anyone else is refused and the token
    stays valid.
    """
    handle = kernel.in_flight.take(_int(args, "token"), proc.pid)
    return _cap_result(kernel, proc.pid, handle), []


@syscall("wait")
def _wait(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
          ) -> tuple[Any, list[int]]:
    child = kernel.processes.get(_int(args, "pid"))
    if child.parent != proc.pid:
        raise LookupError(f"process {child.pid} is not a child of {proc.pid}")
    return {"status": kernel.processes.wait(child.pid)}, []


@syscall("exit")
def _exit(kernel: Kernel, proc: ExoProcess, args: dict[str, Any], fds: list[int]
          ) -> tuple[Any, list[int]]:
    with contextlib.suppress(OSError):
        proc.sandbox.kill()
    return {}, []

