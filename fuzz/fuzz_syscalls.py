"""Fuzz the syscall decoder and dispatcher with atheris (run outside `make test`).

    .venv/bin/python fuzz/fuzz_syscalls.py              # 1,000,000 runs -> bench/results/
    .venv/bin/python fuzz/fuzz_syscalls.py --runs 10000  # a shorter session, not recorded

Each input is either raw bytes (what a hostile app can put in a request) or a request
built from the input (a known syscall name, arguments of every JSON type). It goes
through exactly what the kernel runs for a request that arrives on a bootstrap channel
(``exo.abi.decode_message`` then ``exo.kernel.syscalls._dispatch``), against a real booted
kernel and a real capability space. The properties checked for every input:

* nothing raises out of the decoder or the dispatcher (a crash of the harness is a bug);
* every request gets a reply that is a JSON object with ``ok`` true or false and that
  ``encode_message`` accepts (it fits the channel);
* no descriptor leaks: the process's open descriptor count stays flat.

Syscalls that start processes, block or end the caller (spawn, wait, exit,
recv_capability) are left out: their argument checking is the same code, and a fuzzer
that starts real sandboxes measures bwrap, not the decoder. The result goes to
bench/results/fuzz_syscalls.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports():
    from exo.abi import ProtocolError, decode_message, encode_message
    from exo.abi.syscalls import TABLE
    from exo.kernel import syscalls

from exo.kernel.config import KernelConfig
from exo.kernel.kernel import Kernel
from exo.kernel.process import ExoProcess

SKIP = frozenset({"spawn", "wait", "exit", "recv_capability"})
OPS = sorted(set(syscalls.HANDLERS) - SKIP)
# every argument name the table knows, and one it does not
ARG_NAMES = sorted({a.name for row in TABLE for a in row.args} | {"bogus"})
GRANT = "READ,WRITE,GRANT,DUPLICATE,TRANSFER"
RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "fuzz_syscalls.json"

_state: dict[str, Any] = {"runs": 0, "ok": 0, "refused": 0, "protocol": 0, "crashes": 0,
                          "too_large": 0}


def _value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    kind = fdp.ConsumeIntInRange(0, 8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 9))
    if kind == 3:
        return fdp.ConsumeFloat()
    if kind == 4:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 300))
    if kind == 5:
        return fdp.PickValueInList(["READ", "READ,WRITE", "ALL", "GRANT", "storage://home/f",
                                    "storage://home/f/x.txt", "storage://", "net://*:80",
                                    "storage://home/f/../../etc", ""])
    if kind == 6:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    return {fdp.PickValueInList(ARG_NAMES): _value(fdp, depth + 1)
            for _ in range(fdp.ConsumeIntInRange(0, 4))}


def _request(data: bytes) -> bytes:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        return fdp.ConsumeBytes(fdp.remaining_bytes())
    args = {fdp.PickValueInList(ARG_NAMES): _value(fdp)
            for _ in range(fdp.ConsumeIntInRange(0, 6))}
    req = {"id": _value(fdp), "op": fdp.PickValueInList(OPS), "args": args}
    return json.dumps(req).encode()  # NaN and Infinity included: Python reads them


def main() -> None:
    tree = Path(tempfile.mkdtemp(prefix="exo-fuzz-"))
    root = tree / "root"
    kernel = Kernel(KernelConfig(root=root), ephemeral=True)
    kernel.boot()
    (root / "home" / "f").mkdir(parents=True)
    (root / "home" / "f" / "x.txt").write_text("fuzz\n")
    pid = 4242
    kernel.caps.create_space(pid)
    kernel.caps.grant_root(pid, "storage://home/f", GRANT)
    proc = ExoProcess(pid, ["fuzz"], 1)
    fds_at_start = len(os.listdir("/proc/self/fd"))
    started = time.monotonic()

    def one_input(data: bytes) -> None:
        try:
            check(data)
        except BaseException:
            _state["crashes"] += 1  # atheris reports it and stops; the JSON says so too
            report()
            raise
        if _state["runs"] == runs:  # the last one: libFuzzer exits from C after it
            clean_up()

    def clean_up() -> None:
        """The kernel stopped and its tree removed (each run left one in /tmp)."""
        kernel.shutdown()
        shutil.rmtree(tree, ignore_errors=True)

    def check(data: bytes) -> None:
        raw = _request(data)
        _state["runs"] += 1
        if _state["runs"] == runs:
            # libFuzzer ends the process from C when its runs are done, without running
            # Python's atexit handlers: record now (this input is checked below).
            report()
        try:
            msg = decode_message(raw)
        except ProtocolError:
            _state["protocol"] += 1
            return
        reply, out_fds = syscalls._dispatch(kernel, proc, msg, [])
        for fd in out_fds:
            os.close(fd)
        assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), reply
        try:
            encode_message(reply)  # the reply must fit the channel...
        except ProtocolError:
            _state["too_large"] += 1  # ...or _serve answers ReplyTooLarge instead
        _state["ok" if reply["ok"] else "refused"] += 1
        if reply.get("error") == "InternalError":
            raise AssertionError(f"kernel bug on {raw[:200]!r}: {kernel.messages[-1]}")
        if _state["runs"] % 10_000 == 0:
            leaked = len(os.listdir("/proc/self/fd")) - fds_at_start
            assert leaked < 64, f"{leaked} descriptors leaked"
            # a fresh space now and then: the handles the fuzzer made would otherwise
            # slow every later input (listing them is linear)
            kernel.caps.destroy_space(pid)
            kernel.caps.create_space(pid)
            kernel.caps.grant_root(pid, "storage://home/f", GRANT)

    def report() -> None:
        if runs < 1_000_000:
            print(json.dumps(_state))
            return
        elapsed = time.monotonic() - started
        result = {"target": "exo.abi.decode_message + exo.kernel.syscalls._dispatch",
                  "executions": _state["runs"], "crashes": _state["crashes"],
                  "seconds": round(elapsed, 1),
                  "ok_replies": _state["ok"], "error_replies": _state["refused"],
                  "protocol_errors": _state["protocol"],
                  "replies_too_large": _state["too_large"], "syscalls": OPS,
                  "python": sys.version.split()[0], "atheris": atheris.__version__
                  if hasattr(atheris, "__version__") else "?"}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result))

    import atexit

    atexit.register(clean_up)  # on a finding atheris raises through Python
    args = sys.argv[1:]
    runs = 1_000_000
    if len(args) >= 2 and args[0] == "--runs":
        runs, args = int(args[1]), args[2:]
    atheris.Setup([sys.argv[0], f"-runs={runs}", *args], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
