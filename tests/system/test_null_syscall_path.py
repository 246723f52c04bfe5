"""The null syscall answered by the ring binding: the same bytes, the same rules.

``getpid`` exactly as exo_std sends it is answered without Python on the kernel's side
(exo.kernel.syscalls.server._null_answer); these tests send it from a real sandboxed app
and check the reply is byte for byte what the Python path writes, that any other shape
still goes through the dispatcher's checks, and that a replaced handler is honoured.
"""

from __future__ import annotations

import json

import pytest
from tests.system.helpers import run_app

from exo.kernel.kernel import Kernel
from exo.kernel.syscalls import server

RAW = """
import json, os
from exo_std._kernel import connection
conn = connection()
out = {}
for name, raw in [("exact", b'{"id":5,"op":"getpid","args":{}}'),
                  ("big id", b'{"id":123456789012,"op":"getpid","args":{}}'),
                  ("spaced", b'{"id": 6, "op": "getpid", "args": {}}'),
                  ("zero id", b'{"id":0,"op":"getpid","args":{}}'),
                  ("extra arg", b'{"id":7,"op":"getpid","args":{"x":1}}')]:
    conn._tx.send(raw)
    reply, _ = conn._rx.recv_msg()
    out[name] = bytes(reply).decode()
out["pid"] = os.environ["EXO_PID"]
print(json.dumps(out))
"""


def test_the_fast_answer_is_the_python_answer(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, RAW)
    assert status == 0, err
    got = json.loads(out)
    pid = int(got["pid"])

    def reply(req_id: int) -> str:
        return '{"id":' + str(req_id) + ',"ok":true,"result":{"pid":' + str(pid) + "}}"

    assert got["exact"] == reply(5)
    assert got["big id"] == reply(123456789012)
    # the Python path writes the same for the same request in another spelling
    assert got["spaced"] == reply(6)
    assert got["zero id"] == reply(0)
    # and still refuses what the row does not allow
    refusal = json.loads(got["extra arg"])
    assert refusal["ok"] is False and refusal["id"] == 7 and refusal["code"] != 0


def test_a_replaced_handler_is_honoured(kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(server.HANDLERS, "getpid", lambda *a: ({"pid": -1}, []))
    status, out, err = run_app(kernel, "from exo_std._kernel import call\n"
                                       "print(call('getpid')[0]['pid'])")
    assert status == 0, err
    assert out.strip() == "-1"


def test_the_apps_one_call_round_trip_reads_the_same_pid(kernel: Kernel) -> None:
    """exo_std's getpid goes through Ring.call_int (no message built or decoded in Python):
    the pid it returns is the kernel's answer, call after call, and the same as the
    generic path's (a request the binding does not recognise: the dispatcher answers)."""
    status, out, err = run_app(kernel, """
        import json, os
        from exo_std._kernel import call, connection
        fast = [call("getpid")[0]["pid"] for _ in range(500)]
        conn = connection()
        generic = conn.call("getpid", None)[0]["pid"]  # the Python path, same connection
        print(json.dumps({"fast": sorted(set(fast)), "generic": generic,
                          "env": int(os.environ["EXO_PID"]), "calls": len(fast)}))
    """)
    assert status == 0, err
    got = json.loads(out)
    assert got["fast"] == [got["env"]] and got["generic"] == got["env"]
    assert got["calls"] == 500
