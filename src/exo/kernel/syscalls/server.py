"""The syscall server: one thread per process reads its bootstrap channel.

A syscall blocks only its caller's thread (``wait``, ``recv_capability``), exactly
as a blocking system call would. Every request is checked against its row of the
syscall table (``exo.abi.syscalls``) before its handler runs; a bad one gets an error
reply with its ``exo.abi.ErrorCode`` and the kernel stays up. The bootstrap channel
reporting its peer gone (the ring's liveness socket hung up: the kernel holds no copy
of the child's end) is how death is detected without polling.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any

import msgspec

from exo.abi import ProtocolError, encode_message
from exo.abi.errors import ErrorCode, code_of, refusal
from exo.abi.syscalls import SYSCALLS
from exo.kernel.fairshare import BURST_S, Meter
from exo.kernel.syscalls import caps, ipc, storage
from exo.kernel.syscalls import proc as proc_family  # "proc" names the caller below
from exo.kernel.syscalls.caps import getpid as _getpid
from exo.kernel.syscalls.host import Handler, SyscallError, SyscallHost

if TYPE_CHECKING:
    from exo.kernel.process import ExoProcess

#: Every handler, by syscall name: one file per family. The table's rows and these keys
#: agree (tests/unit/test_syscall_table.py); looked up per request, so a test may
#: replace one.
HANDLERS: dict[str, Handler] = {
    name: handler
    for family in (caps, ipc, storage, proc_family)
    for name, handler in family.HANDLERS.items()
}

_PROTOCOL = int(ErrorCode.PROTOCOL)
_REPLY_TOO_LARGE = int(ErrorCode.REPLY_TOO_LARGE)


def serve_process(kernel: SyscallHost, proc: ExoProcess) -> threading.Thread:
    t = threading.Thread(target=_serve, args=(kernel, proc), name=f"exo-sys-{proc.pid}",
                         daemon=True)
    t.start()
    return t


# msgspec's JSON codec on the kernel's side of every bootstrap channel: ~0.15 µs to decode
# or encode a null syscall's message where the standard library takes ~2 µs (this module
# is off the boot path, and so is msgspec). Decoding is untyped, into the same dicts,
# lists and scalars as json.loads: _dispatch checks every value against the syscall's
# row. It is stricter than json.loads (no NaN or Infinity literals): such requests get a
# ProtocolError reply instead of a refusal of their arguments.
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


#: The null syscall exactly as exo_std sends it (``{"id":N,"op":"getpid","args":{}}``,
#: around its id): the ring binding answers it without the GIL (``_null_answer``).
_GETPID_QUESTION = (b'{"id":', b',"op":"getpid","args":{}}')
#: How long the binding answers before the serving thread's meter settles (µs). Not
#: SETTLE_S: each return to Python takes the interpreter lock, and while another thread
#: holds it (a file server, another process's handler) this process's next getpid waits
#: for it. At 0.2 ms a back-to-back getpid loop took the lock every ~60 calls, so its
#: p99 was that wait whenever anything else ran (bench/isolation.py). Answering holds
#: nothing another thread needs, and what it spends is still charged in full at the
#: next settlement; only a debt is found up to this much later: a fifth of BURST_S.
_ANSWER_BUDGET_US = BURST_S * 1e6 / 5


def _null_answer(host: SyscallHost, proc: ExoProcess) -> tuple[bytes, bytes] | None:
    """``getpid``'s reply for ``proc`` around the request id: the bytes ``_dispatch`` and
    ``_encode`` write for ``_GETPID_QUESTION`` (its row takes no argument and no
    descriptor, so that request is valid as it stands; anything else, a space or a key
    more, is not that request and goes the Python way). None when the table's handler
    has been replaced (a test may) or the reply does not have that shape.

    Why: the null syscall is most of what a well-behaved app asks, and answering it in
    Python means waiting for the interpreter lock behind whatever the kernel does for
    other processes (a flood of 60 KiB names, a FUSE request); answered by the binding
    it takes no lock and no Python on the kernel's side (docs/ARCHITECTURE.md)."""
    if HANDLERS.get("getpid") is not _getpid:
        return None
    result, _ = _getpid(host, proc, {}, [])
    whole = _encode({"id": 0, "ok": True, "result": result})
    head = b'{"id":0'
    if not whole.startswith(head) or len(whole) > 56:  # one inline slot with a 1-digit id
        return None
    return (b'{"id":', whole[len(head):])


def _serve(kernel: SyscallHost, proc: ExoProcess) -> None:
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
    answer = _null_answer(kernel, proc) if channel.answers_natively else None
    try:
        while True:
            try:
                if answer is None or HANDLERS.get("getpid") is not _getpid:
                    got = channel.recv()
                else:
                    answered = channel.answer_or_recv(_GETPID_QUESTION, answer,
                                                      _ANSWER_BUDGET_US)
                    if isinstance(answered, int):  # answered without us: account for them
                        share.seen(pid)
                        meter.pay(meter.tick())
                        continue
                    got = answered
            except ProtocolError as exc:
                share.seen(pid)
                reply: dict[str, Any] = {"id": None, "ok": False, "error": "ProtocolError",
                                         "code": _PROTOCOL, "message": str(exc)}
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
                          "code": _REPLY_TOO_LARGE, "message": str(exc)})
    except Exception:
        return False
    finally:
        for fd in out_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
    return True


def _dispatch(host: SyscallHost, caller: ExoProcess, msg: dict[str, Any],
              fds: list[int]) -> tuple[dict[str, Any], list[int]]:
    """One request's reply (and the descriptors to send with it). Nothing raised here
    escapes: a refusal is answered with its code (``exo.abi.errors.code_of``), anything
    else is a kernel bug, logged with its traceback and answered ``INTERNAL``."""
    req_id = msg.get("id")
    if not isinstance(req_id, int | str | None) or isinstance(req_id, bool):
        req_id = None
    op, args = msg.get("op"), msg.get("args", {})
    try:
        if not isinstance(op, str) or not isinstance(args, dict):
            raise SyscallError("request needs an 'op' string and an 'args' object",
                               ErrorCode.PROTOCOL)
        handler = HANDLERS.get(op)
        row = SYSCALLS.get(op)
        if handler is None or row is None:
            if row is not None:
                raise SyscallError(f"{op}: not implemented yet ({row.note})",
                                   ErrorCode.NOT_IMPLEMENTED)
            raise SyscallError(f"unknown syscall {op[:64]!r}", ErrorCode.UNKNOWN_SYSCALL)
        if args or row.args:
            args = row.validate(args)
        lo, hi = row.fds_in
        if not lo <= len(fds) <= hi:
            raise SyscallError(f"{op} takes {lo if lo == hi else f'{lo}..{hi}'} "
                               f"descriptors, not {len(fds)}")
        needs = row.handle_rights
        if needs is not None:
            host.caps.check(caller.pid, args[needs[0]], needs[1])
        result, out_fds = handler(host, caller, args, fds)
        return {"id": req_id, "ok": True, "result": result}, out_fds
    except Exception as exc:
        code = code_of(exc)
        if code is not None:
            return refusal(req_id, exc, code), []
        import traceback  # only on this path: keeps the boot imports lean

        name = op[:64] if isinstance(op, str) else "?"
        host.log(f"syscall {name} from pid {caller.pid} failed in the kernel: "
                 + "".join(traceback.format_exception(exc)).rstrip())
        return {"id": req_id, "ok": False, "error": "InternalError",
                "code": int(ErrorCode.INTERNAL),
                "message": f"the kernel failed to serve {name!r} ({type(exc).__name__}); "
                           "see the kernel log"}, []
    finally:
        for fd in fds:  # descriptors a handler did not take (and clear) are closed
            with contextlib.suppress(OSError):
                os.close(fd)
