"""Fuzz the Fusion Ring's validators with atheris: arbitrary bytes as ring memory.

Each input overwrites a region of a ring's shared memory — header indices, slots, the
return queue and its indices, whatever the fuzzer picks — exactly as a hostile peer may,
then drives both validators: the consumer's (recv, recv_batch, recv_batch_into,
recv_msg_or_answer, and the releases that push returns) and the producer's
(drain_returns, send with zero-copy blocks outstanding). Any exception other than the
documented ones, a crash or a hang is a finding; every 1000 inputs the producer's
segment must pass `check()` with no block leaked once the ring is torn down.

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python fuzz/fuzz_ring.py            # 1,000,000 runs -> bench/results/fuzz_ring.json
    .venv/bin/python fuzz/fuzz_ring.py --runs 10000
    .venv/bin/python fuzz/fuzz_ring.py --child [libFuzzer args]   # the fuzzer itself

Importable without atheris (the import is inside `fuzz`), and not collected by pytest
(not under tests/, not named test_*).

Coverage: atheris guides mutation by the coverage of instrumented Python code; the C
extension is not built with -fsanitize=fuzzer, so inside fring.c this is a mutation
fuzzer without coverage feedback (the harness picks the region to overwrite, so every
field is reached).
"""

from __future__ import annotations

import json
import mmap
import os
import platform
import re
import struct
import subprocess
import sys
import time
from array import array
from pathlib import Path
from typing import Any

from exo.ipc import _fring
from exo.ipc.errors import IpcError, ProtocolError
from exo.ipc.ring import ring_size  # also installs the exception classes
from exo.mm import SharedPool

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "bench" / "results" / "fuzz_ring.json"
CAP = 16
SIZE = ring_size(CAP)
EXPECTED = (ProtocolError, IpcError, TimeoutError, EOFError, ConnectionError, ValueError)

_buf = mmap.mmap(-1, SIZE)
_answers = mmap.mmap(-1, SIZE)  # recv_msg_or_answer's reply ring (honest: the kernel's own)
QUESTION = (b'{"id":', b',"op":"getpid","args":{}}')
ANSWER = (b'{"id":', b',"ok":true,"result":{"pid":7}}')
_pool = SharedPool.create(1 << 16)
_out = bytearray(4096)
_lens = array("I", bytes(4 * 16))
_count = [0]


_seen: dict[tuple[int, str], int] = {}


def _classify(op: int, exc: BaseException) -> None:
    """Give the fuzzer feedback from inside C: each kind of rejection takes its own
    branch here (atheris instruments this function), so inputs reaching a new
    validator are kept in the corpus."""
    msg = str(exc)
    if "stale or forged" in msg:
        kind = "seq"
    elif "unknown flags" in msg:
        kind = "flags"
    elif "HANDLES" in msg:
        kind = "handles-shape"
    elif "too many handles" in msg:
        kind = "handles-count"
    elif "unknown slot type" in msg:
        kind = "type"
    elif "descriptor outside" in msg:
        kind = "descriptor"
    elif "descriptor of size" in msg:
        kind = "descriptor-size"
    elif "inline size" in msg:
        kind = "inline-size"
    elif "truncated" in msg:
        kind = "truncated"
    elif "return queue" in msg:
        kind = "return-indices"
    elif "broken" in msg:
        kind = "broken"
    elif "tail" in msg:
        kind = "tail"
    elif "head" in msg:
        kind = "head"
    elif "closed" in msg:
        kind = "closed"
    elif "timed out" in msg:
        kind = "timeout"
    elif "carries handles" in msg:
        kind = "has-handles"
    elif "buffer holds" in msg:
        kind = "too-big"
    else:
        kind = type(exc).__name__
    key = (op, kind)
    _seen[key] = _seen.get(key, 0) + 1


def one_input(data: bytes) -> None:
    """One hostile memory image, both validators."""
    _fring.init_header(_buf, CAP)
    prod = _fring.Ring(_buf, 0)
    cons = _fring.Ring(_buf, 1)
    prod.set_pool(_pool.buffer, _pool.alloc, _pool.free, _pool.free_returned)
    cons.set_pool(_pool.buffer)
    # some honest traffic first: blocks outstanding, some returned, one in the queue
    prod.send(b"a" * 100)
    prod.send(b"b" * 700)
    prod.send(b"inline")
    prod.send(QUESTION[0] + b"12" + QUESTION[1])
    _fring.init_header(_answers, CAP)
    tx = _fring.Ring(_answers, 0)
    blk = cons.recv(timeout=0)
    if not isinstance(blk, bytes):
        blk.release()
    # the hostile peer's write: where (first 2 bytes), then what
    if len(data) >= 2:
        at = struct.unpack_from("<H", data)[0] % SIZE
        payload = data[2 : 2 + SIZE - at]
        _buf[at : at + len(payload)] = payload
    for op in (6, 0, 1, 2, 3, 4, 5, 6):
        try:
            if op == 0:
                got: Any = cons.recv(timeout=0)
                if not isinstance(got, bytes):
                    got.release()
            elif op == 1:
                for m in cons.recv_batch(timeout=0):
                    if not isinstance(m, bytes):
                        m.release()
            elif op == 2:
                cons.recv_batch_into(_out, _lens, timeout=0)
            elif op == 3:
                prod.drain_returns()
            elif op == 4:
                prod.send(b"c" * 300, timeout=0)
            elif op == 5:
                cons.recv_msg(timeout=0)
            else:  # the kernel's null-syscall answerer reads the same hostile memory
                got = cons.recv_msg_or_answer(tx, *QUESTION, *ANSWER, 0.0, 0)
                if isinstance(got, tuple) and not isinstance(got[0], bytes):
                    got[0].release()
        except EXPECTED as exc:
            _classify(op, exc)
    # tear down: the consumer leaves, so the producer takes back every block still out
    struct.pack_into("<I", _buf, 192 + 4, 1)  # cons_closed
    cons._shutdown(False)
    prod._shutdown(True)
    tx._shutdown(False)
    _count[0] += 1
    if _count[0] % 1000 == 0:
        _pool.check()
        in_use = _pool.stats()["bytes_in_use"]
        if in_use:
            raise AssertionError(f"{in_use} bytes leaked in the producer's segment")


def fuzz(argv: list[str]) -> None:
    import atheris  # only the fuzzing child needs it

    atheris.instrument_func(_classify)
    atheris.instrument_func(one_input)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        fuzz([sys.argv[0], *sys.argv[2:]])
        return 0
    runs = 1_000_000
    if len(sys.argv) > 2 and sys.argv[1] == "--runs":
        runs = int(sys.argv[2])
    workdir = HERE / "artifacts"
    workdir.mkdir(exist_ok=True)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", f"-runs={runs}", "-max_len=4096", "-len_control=0",
         "-timeout=10",
         f"-artifact_prefix={workdir}/", "-print_final_stats=1"],
        capture_output=True, text=True, check=False,
    )
    seconds = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    crashes = len([p for p in workdir.iterdir() if p.name.startswith(("crash-", "timeout-",
                                                                       "oom-", "leak-"))])
    result = {
        "harness": "fuzz/fuzz_ring.py",
        "executions": int(done.group(1)) if done else None,
        "crashes": crashes,
        "fuzzer_exit_code": proc.returncode,
        "seconds": round(seconds, 1),
        "execs_per_second": round(int(done.group(1)) / seconds) if done else None,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, Linux {platform.release()}",
        "note": "atheris (libFuzzer); the C extension is not coverage-instrumented",
        "tail_of_log": log.strip().splitlines()[-8:],
    }
    if runs >= 1_000_000:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if proc.returncode == 0 and crashes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
