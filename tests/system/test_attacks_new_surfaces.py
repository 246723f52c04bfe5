"""A hostile application against the kernel's newer surfaces: the agents' syscall and
channels (``agent_connect``, AI-Core's router, the sealed sessions), the module bridge
(``open_service``) and the DEFERRED boot step they depend on.

Each test is an attack made as a sandboxed app holding the least a real app would hold,
and asserts what the kernel must do (docs/threat-model.md): answer with an error, bound
what it spends, never crash a thread, hang, or make another app wait.
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests._support.kernels import booted_kernel
from tests.modules.modlib import build
from tests.system.test_security_areas import AREA, kernel_tpm  # noqa: F401  (fixture)

from exo.agents.subsystem import running
from exo.kernel.kernel import Kernel
from exo.kernel.manifest import parse_grant
from exo.modules import ModuleError
from exo.modules.manager import ModuleManager

AREA_GRANT = "storage://home/a=READ"
# The agents' client needs PyNaCl and cryptography: the runtime's interpreter.
APP_PYTHON = sys.executable


@pytest.fixture
def thread_errors() -> Iterator[list[str]]:
    """Every exception that escapes a thread of this process (the kernel's) meanwhile."""
    seen: list[str] = []
    before = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        seen.append(f"{args.thread.name if args.thread else '?'}: "
                    f"{args.exc_type.__name__}: {args.exc_value}")

    threading.excepthook = hook
    try:
        yield seen
    finally:
        threading.excepthook = before


@pytest.fixture
def booted(tmp_path: Path) -> Iterator[Kernel]:
    """A kernel whose DEFERRED step (agents, module manager) has not been started."""
    with booted_kernel(tmp_path / "root") as k:
        yield k


@pytest.fixture
def kernel(booted: Kernel) -> Kernel:
    booted.start_deferred()
    booted.wait_deferred(60)
    return booted


@pytest.fixture
def manager(kernel: Kernel) -> ModuleManager:
    sub = kernel._by_key["modules"]
    assert isinstance(sub.manager, ModuleManager)  # type: ignore[attr-defined]
    return sub.manager  # type: ignore[attr-defined]


def _spawn(k: Kernel, code: str, caps: tuple[str, ...], out: Any, err: Any) -> Any:
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return k.processes.spawn([APP_PYTHON, "-c", textwrap.dedent(code)],
                                 [parse_grant(c) for c in caps],
                                 stdio=(null, out.fileno(), err.fileno()))
    finally:
        os.close(null)


def _run(k: Kernel, code: str, *caps: str) -> tuple[int, list[str], str]:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = _spawn(k, code, caps, out, err)
        status = k.processes.wait(proc.pid, timeout=120)
        out.seek(0)
        err.seek(0)
        return status, out.read().decode().splitlines(), err.read().decode()


def _wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _router_conns(k: Kernel, pid: int) -> int:
    agents = running(k.core.boot_id)
    assert agents is not None and agents.router is not None
    return sum(c.pid == pid for a in list(agents.router._agents.values())
               for c in list(a.conns.values()))


QUERY = """
    from exo_std.ai import Agent
    with Agent.connect("ai-res") as a:
        print(a.query("sys.info")[:6])
"""


# ---------------------------------------------------------------- before the DEFERRED step

def test_agent_connect_and_open_service_before_the_deferred_step_are_refused(
        booted: Kernel) -> None:
    status, out, err = _run(booted, """
        from exo_std._kernel import call
        for op, name in (("agent_connect", "ai-res"), ("open_service", "ipc://echo")):
            try:
                print(op, "opened", call(op, name=name))
            except Exception as exc:
                print(op, type(exc).__name__, exc)
    """, "agent://ai-res=SEND", "ipc://echo=SEND")
    assert status == 0, err
    assert out[0].startswith("agent_connect NotFound") and "DEFERRED" in out[0]
    assert out[1].startswith("open_service NotFound") and "module manager" in out[1]


# ---------------------------------------------------------------- names

def test_malformed_agent_and_service_names_are_answered_with_an_error(kernel: Kernel) -> None:
    status, out, err = _run(kernel, """
        from exo_std._kernel import call
        names = ["", "*", "..", "../x", "ai-res/x", "a\\x00b", "ai-res\\n", "x" * 4000,
                 "ai-res/" + "a/" * 500, "\\ud800", "agent://ai-res"]
        for name in names:
            for op, arg in (("agent_connect", name), ("open_service", name),
                            ("open_service", "ipc://" + name)):
                try:
                    call(op, name=arg)
                    print(op, repr(arg[:30]), "OPENED")
                except Exception as exc:
                    print(op, repr(arg[:30]), type(exc).__name__)
        for op, arg in (("agent_connect", 7), ("agent_connect", None),
                        ("open_service", ["ipc://echo"]), ("open_service", {"a": 1})):
            try:
                call(op, name=arg)
                print(op, "OPENED")
            except Exception as exc:
                print(op, type(exc).__name__)
        from exo_std.ai import Agent
        print(Agent.connect("ai-res").query("sys.info")[:6])
    """, "agent://*=SEND", "ipc://*=SEND")
    assert status == 0, err
    assert out[-1] == "Exo-OS"  # the kernel still serves the app afterwards
    refusals = out[:-1]
    assert len(refusals) == 11 * 3 + 4
    assert not [line for line in refusals if line.endswith(("OPENED", "InternalError"))]


# ---------------------------------------------------------------- capabilities in frames

def test_capabilities_sent_on_an_agent_channel_close_it_and_crash_no_kernel_thread(
        kernel: Kernel, thread_errors: list[str]) -> None:
    """The kernel's end of a channel takes no capabilities: a message carrying tokens used
    to make the router's relay thread call a syscall from inside the kernel (an uncaught
    ``KernelUnavailable``, a traceback per message in the kernel's log)."""
    status, out, err = _run(kernel, textwrap.dedent("""
        from exo_std._kernel import call
        from exo_std.ipc import attach_endpoint
        from exo.ipc import PeerGoneError
        for attempt in range(3):
            ep = attach_endpoint(call("agent_connect", name="ai-res")[1])
            ep._channel.tx.send(b"hello", (12345, 2 ** 32 - 1), None)
            try:
                ep.recv(timeout=10)
                print("answered")
            except PeerGoneError:
                print("closed")
            ep.close()
    """) + textwrap.dedent(QUERY), "agent://ai-res=SEND")
    assert status == 0, err
    assert out == ["closed", "closed", "closed", "Exo-OS"]
    assert thread_errors == []


def test_capabilities_sent_to_a_module_service_close_the_channel(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path,
        thread_errors: list[str]) -> None:
    manager.load(str(build(tmp_path, kernel.root, "1.0")))
    status, out, err = _run(kernel, """
        from exo_std._kernel import call
        from exo_std.ipc import attach_endpoint
        from exo.ipc import PeerGoneError
        from exo.modules import wire
        ep = attach_endpoint(call("open_service", name="ipc://echo")[1])
        ep._channel.tx.send(wire.frame(wire.REQUEST, 1, b"x"), (99,), None)
        try:
            ep.recv(timeout=10)
            print("answered")
        except PeerGoneError:
            print("closed")
        ep = attach_endpoint(call("open_service", name="ipc://echo")[1])
        ep.send(wire.frame(wire.REQUEST, 2, b"ok"))
        print(wire.parse(ep.recv(timeout=10)[0])[2].decode())
    """, "ipc://echo=SEND")
    assert status == 0, err
    assert out == ["closed", "v1.0:ok"]
    assert thread_errors == []
    bridges = kernel._by_key["modules"].bridges  # type: ignore[attr-defined]
    _wait_for(lambda: bridges.count() == 0, "the bridges of an exited app end")
    assert manager.request("echo", b"alive") == b"v1.0:alive"


# ---------------------------------------------------------------- a reader that never reads

FLOOD = """
    import json, time
    from exo_std._kernel import call
    from exo_std.ipc import attach_endpoint
    from exo.agents.core.secure import SecureSession
    from exo.agents.core import wire
    ends = []
    for i in range(4):
        ep = attach_endpoint(call("agent_connect", name="ai-res")[1])
        s = SecureSession("client")
        ep.send(s.hello())
        s.finish(wire.to_bytes(ep.recv(timeout=30)[0]))
        ends.append((ep, s))
    sent = 0
    try:
        for j in range(100):  # paced under the agent's queue bound; answers never read
            for ep, s in ends:
                ep.send(s.seal(json.dumps({"intent": "sys.info"}).encode()), timeout=5)
                sent += 1
            time.sleep(0.02)
    except Exception as exc:
        print("cut while sending:", type(exc).__name__, flush=True)
    print("flooded", sent, flush=True)
    time.sleep(60)
"""


def test_an_app_that_never_reads_its_answers_holds_up_no_other_app(kernel: Kernel) -> None:
    """Four connections whose answers are never read: the router's one reader per agent
    used to wait 5 s on each full channel, so every other app's connection to the agent
    stalled ~20 s. Now such a reader is cut off at once."""
    with tempfile.NamedTemporaryFile() as out, tempfile.TemporaryFile() as err:
        hostile = _spawn(kernel, FLOOD, ("agent://ai-res=SEND",), out, err)
        try:
            _wait_for(lambda: b"flooded" in Path(out.name).read_bytes(),
                      "the hostile app sent its requests", 120)
            t0 = time.monotonic()
            status, lines, errors = _run(kernel, """
                from exo_std.ai import Agent
                with Agent.connect("ai-res", timeout=60) as a:
                    for _ in range(5):
                        print(a.query("sys.info")[:6])
            """, "agent://ai-res=SEND")
            took = time.monotonic() - t0
            assert status == 0, errors
            assert lines == ["Exo-OS"] * 5
            # Not a benchmark: a bound far above a run's few hundred ms, below one 5 s stall.
            assert took < 4.5, f"the victim waited {took:.1f} s"
            _wait_for(lambda: _router_conns(kernel, hostile.pid) == 0,
                      "the hostile app's connections are cut")
        finally:
            kernel.api.interrupt(hostile, grace=0)
            kernel.processes.wait(hostile.pid, timeout=30)


# ---------------------------------------------------------------- revocation races

def test_a_revocation_racing_agent_connect_leaves_no_connection(kernel: Kernel) -> None:
    """The capability is revoked after ``agent_connect`` checked it but before the router
    registered the connection (so the revocation found nothing to cut): the syscall must
    fail, not hand out a connection the app no longer holds a capability for."""
    agents = running(kernel.core.boot_id)
    assert agents is not None and agents.router is not None
    router = agents.router
    real = router.connect
    raced: list[int] = []

    def racing_connect(pid: int, name: str, *args: Any) -> list[int]:
        raced.append(kernel.caps.revoke_resource("agent://ai-res"))
        return real(pid, name, *args)

    router.connect = racing_connect  # type: ignore[method-assign]
    try:
        status, out, err = _run(kernel, """
            from exo_std._kernel import call
            try:
                print("opened", call("agent_connect", name="ai-res"))
            except Exception as exc:
                print(type(exc).__name__, exc)
        """, "agent://ai-res=SEND")
    finally:
        router.connect = real  # type: ignore[method-assign]
    assert status == 0, err
    assert raced and raced[0] >= 1
    assert out[0].startswith("CapabilityDenied") and "revoked" in out[0], out
    assert all(c.closing or c.pid <= 0 for a in router._agents.values()
               for c in a.conns.values())


# ---------------------------------------------------------------- sealed frames

def test_a_replayed_or_reordered_sealed_frame_closes_only_that_connection(
        kernel: Kernel) -> None:
    status, out, err = _run(kernel, """
        import json
        from exo_std._kernel import call
        from exo_std.ai import Agent
        from exo_std.ipc import attach_endpoint
        from exo.agents.core.secure import SecureSession
        from exo.agents.core import wire
        from exo.ipc import PeerGoneError
        good = Agent.connect("ai-res")

        def session():
            ep = attach_endpoint(call("agent_connect", name="ai-res")[1])
            s = SecureSession("client")
            ep.send(s.hello())
            s.finish(wire.to_bytes(ep.recv(timeout=30)[0]))
            return ep, s

        def outcome(ep, s, frames):
            for f in frames:
                ep.send(f)
            try:
                while True:
                    got = s.open(wire.to_bytes(ep.recv(timeout=10)[0]))
                    print("answer", json.loads(got)["ok"])
            except PeerGoneError:
                print("closed")
            except Exception as exc:
                print(type(exc).__name__)

        ep, s = session()
        first = s.seal(b'{"intent": "sys.info"}')
        outcome(ep, s, [first, first])                    # replayed
        ep, s = session()
        one, two = s.seal(b'{"intent": "sys.info"}'), s.seal(b'{"intent": "sys.info"}')
        outcome(ep, s, [two, one])                        # reordered
        ep, s = session()
        f = bytearray(s.seal(b'{"intent": "sys.info"}'))
        f[-1] ^= 1
        outcome(ep, s, [bytes(f)])                        # altered
        print(good.query("sys.info")[:6])
    """, "agent://ai-res=SEND")
    assert status == 0, err
    assert out == ["answer True", "closed", "closed", "closed", "Exo-OS"]


# ---------------------------------------------------------------- open many, never close

def test_connections_of_an_app_that_dies_holding_them_are_released(kernel: Kernel) -> None:
    """An app opens every agent connection and module channel it may, never closes them and
    is killed: the kernel's relay threads and counts go back to what they were."""
    def agent_threads() -> int:
        return sum(t.name.startswith("exo-agent-ai-res-") for t in threading.enumerate())

    status, out, err = _run(kernel, QUERY, "agent://ai-res=SEND")  # the agent is up
    assert status == 0, err
    base = agent_threads()
    with tempfile.NamedTemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        hog = _spawn(kernel, """
            import time
            from exo_std._kernel import call
            held = []
            for _ in range(10):
                try:
                    held.append(call("agent_connect", name="ai-res")[1])
                except Exception as exc:
                    print(type(exc).__name__, flush=True)
            print("held", len(held), flush=True)
            time.sleep(120)
        """, ("agent://ai-res=SEND",), out_f, err_f)
        _wait_for(lambda: b"held" in Path(out_f.name).read_bytes(), "the app connected")
        assert b"held 4" in Path(out_f.name).read_bytes()
        assert _router_conns(kernel, hog.pid) == 4
        kernel.api.interrupt(hog, grace=0)
        kernel.processes.wait(hog.pid, timeout=30)
    _wait_for(lambda: _router_conns(kernel, hog.pid) == 0 and agent_threads() <= base,
              "the dead app's connections and relay threads are released")
    status, out, err = _run(kernel, QUERY, "agent://ai-res=SEND")
    assert status == 0 and out == ["Exo-OS"], err




def _hoarder(call: str, tries: int) -> str:
    """A child that makes ``call`` up to ``tries`` times and prints what refused it (and
    whether the refusal counted its ancestors) and how many it got."""
    return f"""
from exo_std._kernel import call
held = 0
for _ in range({tries}):
    try:
        {call}
        held += 1
    except Exception as exc:
        print(type(exc).__name__, "with its descendants" in str(exc), flush=True)
        break
print("child", held, flush=True)
"""


CHILD = _hoarder('call("agent_connect", name="ai-res")', 4)


def test_an_app_cannot_fill_an_agent_with_its_children(kernel: Kernel) -> None:
    """The agent takes ``MAX_PER_AGENT`` (64) connections and each process 4: an app with
    16 children (its default quota) used to take them all, refusing every other app and
    the shell's assistant. A connection now counts against every ancestor too: while
    the app holds 2, each child (one at a time) gets the other 2."""
    status, out, err = _run(kernel, f"""
        import sys
        from exo_std import caps, process
        from exo_std._kernel import call
        agent = [c for c in caps.handles() if c.resource == "agent://ai-res"][0]
        mine = [call("agent_connect", name="ai-res") for _ in range(2)]
        for _ in range(3):
            print("exit", process.wait(process.spawn([sys.executable, "-c", {CHILD!r}],
                                                     [agent])), flush=True)
    """, "agent://ai-res=SEND,DUPLICATE")
    assert status == 0, err
    assert out == ["NotFound True", "child 2", "exit 0"] * 3, (out, err)


SERVICE_CHILD = _hoarder('call("open_service", name="ipc://echo")', 16)


def test_an_app_cannot_multiply_its_module_channels_with_children(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path) -> None:
    """16 channels per process, 1,024 in the kernel: children (16 each, and theirs) used
    to reach the kernel-wide bound and refuse every other app. A channel now counts
    against every ancestor: while the app holds 10, each child gets the other 6."""
    manager.load(str(build(tmp_path, kernel.root, "1.0")))
    status, out, err = _run(kernel, f"""
        import sys
        from exo_std import caps, process
        from exo_std._kernel import call
        echo = [c for c in caps.handles() if c.resource == "ipc://echo"][0]
        mine = [call("open_service", name="ipc://echo") for _ in range(10)]
        for _ in range(2):
            print("exit", process.wait(process.spawn([sys.executable, "-c",
                                                      {SERVICE_CHILD!r}], [echo])),
                  flush=True)
    """, "ipc://echo=SEND,DUPLICATE")
    assert status == 0, err
    assert out == ["QuotaExceeded True", "child 6", "exit 0"] * 2, (out, err)
    bridges = kernel._by_key["modules"].bridges  # type: ignore[attr-defined]
    _wait_for(lambda: bridges.count() == 0, "every channel of the exited apps ends")


# ---------------------------------------------------------------- encrypted areas

def test_one_app_cannot_take_every_byte_of_decrypted_area_memory(
        kernel_tpm: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Decrypted files are held in kernel memory, at most ``EXO_AREA_MEMORY_MB`` at once
    for the whole kernel. An app that opens one file again and again and never closes it
    held all of it (every other app's open failed with ENOMEM); now a process and its
    children hold at most half, and another app still opens the file."""
    from exo.security import areas, areaserve

    areas.write_file(kernel_tpm.root, AREA + "/doc", b"d" * (600 << 10))
    monkeypatch.setenv(areaserve.MEMORY_ENV, "4")
    with tempfile.NamedTemporaryFile() as out, tempfile.TemporaryFile() as err:
        hog = _spawn(kernel_tpm, f"""
            import time
            from exo_std import fs
            held = []
            try:
                while True:
                    held.append(fs.File.open("{AREA}/doc", "READ"))
            except OSError as exc:
                print("held", len(held), exc.errno, flush=True)
            time.sleep(60)
        """, (AREA_GRANT,), out, err)
        try:
            _wait_for(lambda: b"held" in Path(out.name).read_bytes(), "the hog opened")
            status, lines, errors = _run(kernel_tpm, f"""
                from exo_std import fs
                with fs.File.open("{AREA}/doc", "READ") as f:
                    print(len(f.read()))
            """, AREA_GRANT)
        finally:
            kernel_tpm.api.interrupt(hog, grace=0)
            kernel_tpm.processes.wait(hog.pid, timeout=30)
    assert status == 0 and lines == [str(600 << 10)], errors


# ---------------------------------------------------------------- the kernel's own log files

PLANT = """
import os, sys
os.makedirs(sys.argv[1], exist_ok=True)
os.symlink(sys.argv[2], os.path.join(sys.argv[1], sys.argv[3]))
print("planted")
"""


def _plant(k: Kernel, directory: str, target: Path, name: str) -> None:
    """An app granted ``storage://var/log`` WRITE plants ``directory/name -> target``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            proc = k.processes.spawn([APP_PYTHON, "-c", PLANT, directory, str(target), name],
                                     [parse_grant("storage://var/log=READ,WRITE")],
                                     stdio=(null, out.fileno(), err.fileno()), cwd="/var/log")
        finally:
            os.close(null)
        assert k.processes.wait(proc.pid, timeout=60) == 0
        out.seek(0)
        err.seek(0)
        assert out.read() == b"planted\n", err.read()


def test_a_symlink_planted_as_an_agents_log_is_not_followed(kernel: Kernel,
                                                            tmp_path: Path) -> None:
    """The kernel (root) opened ``var/log/agents/ai-res.log`` with O_CREAT following the
    link: it created (and the agent then wrote) a host file the app chose."""
    target = tmp_path / "host-file-outside-the-tree"
    _plant(kernel, "/var/log/agents", target, "ai-res.log")
    status, out, err = _run(kernel, """
        from exo_std._kernel import call
        try:
            call("agent_connect", name="ai-res")
        except Exception as exc:
            print(type(exc).__name__, exc)
    """, "agent://ai-res=SEND")
    assert status == 0, err
    assert not target.exists(), "the kernel created a host file through the app's symlink"
    assert "symbolic links" in out[0] or "ELOOP" in out[0] or "Errno 40" in out[0], out


def test_a_symlink_planted_as_a_modules_log_truncates_nothing(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("precious host data\n")
    _plant(kernel, "/var/log/modules", target, "echo-1.0.log")
    """The kernel (root) opened ``var/log/modules/NAME-VERSION.log`` with O_TRUNC
    following the link: it emptied a host file the app chose."""
    with pytest.raises(ModuleError, match=r"symbolic links|Errno 40"):
        manager.load(str(build(tmp_path, kernel.root, "1.0")))
    assert target.read_text() == "precious host data\n"
    fifo = kernel.root / "var" / "log" / "modules" / "echo-2.0.log"
    os.mkfifo(fifo)  # a FIFO there must not hold the loading thread
    with pytest.raises(ModuleError, match=r"not a plain file|No such device"):
        manager.load(str(build(tmp_path / "v2", kernel.root, "2.0")))


# ---------------------------------------------------------------- descriptors

def test_descriptors_sent_with_the_connect_calls_and_many_connects_leak_nothing(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path) -> None:
    """Descriptors the rows do not take are refused (and closed by the kernel); 40
    connections and channels opened and closed, and 40 dropped unopened, leave the
    kernel's descriptor and thread counts where they were."""
    manager.load(str(build(tmp_path, kernel.root, "1.0")))
    status, out, err = _run(kernel, QUERY, "agent://ai-res=SEND")  # the agent is up
    assert status == 0, err

    def kernel_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    fds0, threads0 = kernel_fds(), threading.active_count()
    status, out, err = _run(kernel, """
        import os
        from exo_std._kernel import call
        from exo_std.ipc import attach_endpoint
        r, w = os.pipe()
        for op, name in (("agent_connect", "ai-res"), ("open_service", "ipc://echo")):
            try:
                call(op, fds=[r, w, r], name=name)
                print(op, "OPENED")
            except Exception as exc:
                print(op, type(exc).__name__)
        import time
        from exo_std.errors import NotFound, QuotaExceeded
        def opened(op, name):
            for _ in range(100):  # a closed connection is let go within the relay's poll
                try:
                    return call(op, name=name)[1]
                except (NotFound, QuotaExceeded):
                    time.sleep(0.1)
            raise SystemExit(f"{op}: never released")
        for i in range(20):
            for op, name in (("agent_connect", "ai-res"), ("open_service", "ipc://echo")):
                fds = opened(op, name)
                if i % 2:
                    attach_endpoint(fds).close()
                else:  # never attached: the descriptors are simply closed
                    for fd in fds:
                        os.close(fd)
        print("done")
    """, "agent://ai-res=SEND", "ipc://echo=SEND")
    assert status == 0, err
    assert out == ["agent_connect InvalidArgument", "open_service InvalidArgument", "done"]
    bridges = kernel._by_key["modules"].bridges  # type: ignore[attr-defined]
    _wait_for(lambda: bridges.count() == 0 and threading.active_count() <= threads0
              and kernel_fds() <= fds0 + 2,
              f"back to {fds0} descriptors and {threads0} threads")


def test_garbage_handshakes_forever_do_not_grow_the_agents_log_without_bound(
        kernel: Kernel) -> None:
    """Each refused connection was one line in the agent's log (a file the kernel appends
    to, never rotated): an app reconnecting to send garbage could fill the disk."""
    from exo.agents.core import runner

    status, out, err = _run(kernel, QUERY, "agent://ai-res=SEND")  # the agent is up
    assert status == 0, err
    log = kernel.root / "var" / "log" / "agents" / "ai-res.log"
    before = log.read_text().count("connection refused")
    status, out, err = _run(kernel, """
        import time
        from exo_std._kernel import call
        from exo_std.errors import NotFound
        from exo_std.ipc import attach_endpoint
        from exo.ipc import PeerGoneError
        refused = 0
        while refused < 24:
            try:
                ep = attach_endpoint(call("agent_connect", name="ai-res")[1])
            except NotFound:  # 4 at a time: wait for the last ones to be let go
                time.sleep(0.05)
                continue
            ep.send(b"H" + b"\\xff" * 100)  # a HELLO whose key is not one
            try:
                ep.recv(timeout=10)
            except PeerGoneError:
                refused += 1
            ep.close()
        print("refused", refused)
    """, "agent://ai-res=SEND")
    assert status == 0, err
    assert out == ["refused 24"]
    _run(kernel, QUERY, "agent://ai-res=SEND")  # the agent has written what it will
    lines = log.read_text().count("connection refused") - before
    assert 1 <= lines <= runner.MAX_REFUSAL_LINES, lines


BIG_FLOOD = """
import threading, time
from exo_std._kernel import call
from exo_std.ipc import attach_endpoint
from exo.agents.core.secure import SecureSession
from exo.agents.core import wire
end = time.monotonic() + 8
def flood():
    while time.monotonic() < end:
        try:
            ep = attach_endpoint(call("agent_connect", name="ai-res")[1])
            s = SecureSession("client")
            ep.send(s.hello())
            s.finish(wire.to_bytes(ep.recv(timeout=30)[0]))
            while time.monotonic() < end:
                ep.send(b"S" * (1 << 20), timeout=5)  # 1 MiB frames the agent refuses
        except Exception:
            time.sleep(0.01)
print("flooding", flush=True)
ts = [threading.Thread(target=flood) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
"""


def test_an_app_flooding_large_frames_breaks_no_other_apps_connection(
        kernel: Kernel, thread_errors: list[str]) -> None:
    """The kernel → agent pool is shared by every connection: an app's 1 MiB frames
    filled it, and another app's relay got ``MemoryError`` (its connection died, with a
    traceback in the kernel's log). Now a full pool is waited out."""
    status, _out, err = _run(kernel, QUERY, "agent://ai-res=SEND")  # the agent is up
    assert status == 0, err
    with tempfile.NamedTemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        hostile = _spawn(kernel, BIG_FLOOD, ("agent://ai-res=SEND",), out_f, err_f)
        try:
            _wait_for(lambda: b"flooding" in Path(out_f.name).read_bytes(), "it floods")
            status, lines, errors = _run(kernel, """
                from exo_std.ai import Agent
                with Agent.connect("ai-res", timeout=60) as a:
                    for _ in range(10):  # ~900 KB requests: a 1 MiB block each
                        answer = a.request({"intent": "sys.info", "pad": "x" * 900_000})
                        print(answer["ok"], flush=True)
            """, "agent://ai-res=SEND")
        finally:
            kernel.processes.wait(hostile.pid, timeout=60)
    assert status == 0, errors
    assert lines == ["True"] * 10
    assert thread_errors == []
