"""Apps reach a module's service through the ``open_service`` syscall, with its capability
check; a crashed module is restarted by its supervisor (with backoff, up to a limit, in
the kernel log); ``etc/modules/policy.toml`` decides which modules may load and what
more they may hold."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
from tests.modules.conftest import kernel, manager  # noqa: F401  (fixtures)
from tests.modules.modlib import build

from exo.kernel.kernel import Kernel
from exo.kernel.manifest import parse_grant
from exo.modules import ModuleError
from exo.modules import manager as manager_mod
from exo.modules.manager import ModuleManager

from .helpers import APP_PYTHON

APP = r'''
import sys
from exo.modules.client import ServiceClient, ServiceError
name = sys.argv[1]
try:
    client = ServiceClient(name)
except Exception as exc:  # the kernel's refusal, as exo_std raises it
    print("refused:", type(exc).__name__, exc)
    raise SystemExit(0)
print("opened", client.info["service"], client.info["version"])
for word in sys.argv[2:]:
    try:
        print(client.call(word.encode()).decode())
    except ServiceError as exc:
        print("error:", exc)
client.close()
'''


def run_app(k: Kernel, args: list[str], *caps: str) -> tuple[int, str, str]:
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = k.api.start([APP_PYTHON, "-c", APP, *args],
                                    [parse_grant(c) for c in caps],
                                    stdio=(null, out.fileno(), err.fileno()))
        finally:
            os.close(null)
        status = k.api.wait(proc)
        out.seek(0)
        err.seek(0)
        return status, out.read().decode(), err.read().decode()


def test_an_app_opens_a_module_service_it_holds_a_capability_for(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path) -> None:  # noqa: F811
    manager.load(str(build(tmp_path, kernel.root, "1.0")))
    status, out, err = run_app(kernel, ["ipc://echo", "hello", "world"], "ipc://echo=SEND")
    assert status == 0, err
    assert out.splitlines() == ["opened ipc://echo 1.0", "v1.0:hello", "v1.0:world"]

    status, out, err = run_app(kernel, ["ipc://echo", "x"])  # no capability
    assert status == 0, err
    assert out.startswith("refused: ") and "no capability grants SEND on ipc://echo" in out

    status, out, err = run_app(kernel, ["ipc://nothing", "x"], "ipc://nothing=SEND")
    assert "refused: " in out and "nothing: no such module loaded" in out, err
    status, out, err = run_app(kernel, ["storage://home", "x"], "ipc://echo=SEND")
    assert "is not an ipc://NAME" in out, err
    # the bridges are gone with the processes
    sub = kernel._by_key["modules"]
    deadline = time.monotonic() + 10
    while sub.bridges.count() and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.05)
    assert sub.bridges.count() == 0  # type: ignore[attr-defined]


def test_an_app_sees_no_upgrade(kernel: Kernel, manager: ModuleManager,  # noqa: F811
                                tmp_path: Path) -> None:
    manager.load(str(build(tmp_path, kernel.root, "1.0")))
    manager.load(str(build(tmp_path, kernel.root, "2.0")))
    app = r'''
import sys, time
from exo.modules.client import ServiceClient
c = ServiceClient("ipc://echo")
seen, n, after = set(), 0, 0
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline and after < 200:  # until 2.0 served 200 in a row
    n += 1
    version, _, body = c.call(str(n).encode()).partition(b":")
    assert body == str(n).encode(), (n, body)
    seen.add(version.decode())
    after = after + 1 if version == b"v2.0" else 0
print(n, sorted(seen))
'''
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = kernel.api.start([APP_PYTHON, "-c", app, "60"],
                                    [parse_grant("ipc://echo=SEND")],
                                    stdio=(null, out.fileno(), err.fileno()))
        finally:
            os.close(null)
        deadline = time.monotonic() + 30
        while manager.list()[0]["versions"][0]["requests"] < 100:  # the app is under way
            assert time.monotonic() < deadline, "the app sent no requests"
            time.sleep(0.02)
        assert manager.upgrade("echo", "2.0", canary=20, step=40, interval=0.2)["to"] == "2.0"
        status = kernel.api.wait(proc)
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode()
    assert status == 0, errors
    count, _, versions = text.strip().partition(" ")
    assert int(count) > 100 and versions == "['v1.0', 'v2.0']"


def test_a_crashed_module_is_restarted_with_backoff_then_given_up(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_mod, "MAX_RESTARTS", 2)
    manager.load(str(build(tmp_path, kernel.root, "1.0")))
    assert manager.request("echo", b"a") == b"v1.0:a"

    def kill_serving() -> int:
        (row,) = manager.list()
        pid = row["versions"][0]["pid"]
        kernel.processes.kill(pid, signal.SIGKILL)
        return int(pid)

    answers: list[bytes] = []
    first = kill_serving()
    # a request sent while it is down waits for the restart instead of failing
    t = threading.Thread(target=lambda: answers.append(manager.request("echo", b"b")))
    t.start()
    t.join(30)
    assert answers == [b"v1.0:b"]
    (row,) = manager.list()
    assert row["restarts"] == 1 and row["versions"][0]["pid"] != first
    assert "restarted after a crash" in row["last"]
    log = "\n".join(kernel.messages)
    assert "module echo 1.0: process exited" in log and "restart 1/2" in log

    kill_serving()
    deadline = time.monotonic() + 30
    while manager.list()[0]["restarts"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert manager.request("echo", b"c") == b"v1.0:c"
    kill_serving()  # the third crash in the window: given up
    deadline = time.monotonic() + 30
    while not manager.list()[0]["failed"] and time.monotonic() < deadline:
        time.sleep(0.05)
    (row,) = manager.list()
    assert "crashed 3 times" in row["failed"]
    with pytest.raises(ModuleError, match=r"not serving: 1\.0 crashed 3 times"):
        manager.request("echo", b"d", timeout=2)
    manager.unload("echo")


def test_the_policy_file_allows_modules_and_grants_more(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path) -> None:  # noqa: F811
    policy = kernel.root / "etc" / "modules" / "policy.toml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text('allow = ["echo", "net-*"]\n[grants]\necho = ["storage://srv/echo"]\n')
    (kernel.root / "srv" / "echo").mkdir(parents=True)
    with pytest.raises(ModuleError, match=r"other: refused: not in the allow-list of "
                                          r"etc/modules/policy.toml \(echo, net-\*\)"):
        manager.load(str(build(tmp_path, kernel.root, "1.0", name="other")))
    granted = build(tmp_path, kernel.root, "1.0", caps=("storage://srv/echo=READ",))
    assert manager.load(str(granted))["started"]
    greedy = build(tmp_path / "g", kernel.root, "1.1", caps=("storage://srv=READ",))
    with pytest.raises(ModuleError, match="asks for storage://srv=READ, more than a module"):
        manager.load(str(greedy))
    policy.write_text("allow = 3\n")
    with pytest.raises(ModuleError, match=r"policy\.toml: allow must be a list"):
        manager.load(str(greedy))
    policy.write_text("allow = [\n")
    with pytest.raises(ModuleError, match=r"policy\.toml: not valid TOML"):
        manager.load(str(greedy))
    assert manager.request("echo", b"still") == b"v1.0:still"


HOSTILE = r'''
from exo_std._kernel import call
from exo_std.ipc import attach_endpoint
from exo.modules import wire
ends = []
for i in range(17):
    try:
        ends.append(attach_endpoint(call("open_service", name="ipc://echo")[1]))
    except Exception as exc:
        print("open", i, type(exc).__name__, exc)
ep = ends[0]
for junk in (b"", b"\x01", b"\x05" + bytes(8), b"\x01" + bytes(8) + b"ok"):
    ep.send(junk)
    kind, rid, body = wire.parse(ep.recv(timeout=10)[0])
    print(kind, rid, body.decode())
'''


def test_hostile_frames_and_too_many_channels_get_one_line_each(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path) -> None:  # noqa: F811
    manager.load(str(build(tmp_path, kernel.root, "1.0")))
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = kernel.api.start([APP_PYTHON, "-c", HOSTILE],
                                    [parse_grant("ipc://echo=SEND")],
                                    stdio=(null, out.fileno(), err.fileno()))
        finally:
            os.close(null)
        status = kernel.api.wait(proc)
        out.seek(0)
        err.seek(0)
        lines, errors = out.read().decode().splitlines(), err.read().decode()
    assert status == 0, errors
    assert lines[0].startswith("open 16 QuotaExceeded") and "'module services' (16)" in lines[0]
    assert lines[1:] == ["12 0 ProtocolError: not a module frame",
                         "12 0 ProtocolError: not a module frame",
                         "12 0 ProtocolError: frame kind 5 is not a request",
                         "11 0 v1.0:ok"]
    assert manager.request("echo", b"alive") == b"v1.0:alive"
