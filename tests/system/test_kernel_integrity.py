"""A hostile application against the syscall server: every request gets a reply.

Each test attacks the kernel the way an app with no capabilities could, then checks that
the attacker got an error reply, that the kernel kept every resource bounded, and that
it still serves (the same app, and a fresh one).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from tests.system.helpers import run_app

from exo.kernel import syscalls
from exo.kernel.kernel import Kernel


def _kernel_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _syscall_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("exo-sys-"))


def test_spawn_of_a_missing_program_is_an_error_reply(kernel: Kernel) -> None:
    run_app(kernel, "pass")  # warm: the first spawn loads the sandbox and the servers
    before = _kernel_fds()
    status, out, err = run_app(kernel, """
        from exo_std import process
        from exo_std.errors import ProcessError
        for _ in range(20):
            try:
                process.spawn(["/nonexistent/prog"])
            except ProcessError as exc:
                last = exc
        print("refused:", last)
        print("still served:", process.getpid() > 1)
    """)
    assert status == 0, err
    assert "refused:" in out and "No such file or directory" in out, out
    assert "still served: True" in out
    # 20 failed spawns leave nothing behind (it used to be ~8 descriptors each)
    assert _kernel_fds() <= before + 2, (before, _kernel_fds())


# Built inside the app (Python expressions): some are too large for an argv.
MALFORMED = [
    'b""',  # empty
    'b"[]"',  # not an object
    'b"{" * 40_000',  # truncated and deep
    'b"[" * 30_000 + b"]" * 30_000',  # nested past the recursion limit
    "b'{\"id\": 1, \"op\": \"getpid\", \"args\": ' + b'[' * 30_000 + b']' * 30_000 + b'}'",
    """b'{"id": 1, "op": 5, "args": {}}'""",
    """b'{"id": 1, "op": "open", "args": []}'""",
    """b'{"id": 1, "op": "open", "args": {"name": 7, "rights": null}}'""",
    """b'{"id": 1, "op": "duplicate", "args": {"handle": 1e999, "rights": "READ"}}'""",
    """b'{"id": 1, "op": "duplicate", "args": {"handle": ' + b"9" * 5000 + b'}}'""",
    """b'{"id": 1, "op": "spawn", "args": {"argv": [], "caps": "x"}}'""",
    """b'{"id": 1, "op": "recv_capability", "args": {"timeout": -1}}'""",
    """b'{"id": 1, "op": "recv_capability", "args": {"timeout": NaN}}'""",
    """b'{"id": 1, "op": "wait", "args": {"pid": 1}}'""",
    """b'{"id": [1], "op": "nosuch", "args": {}}'""",
    """b'{"id": 1, "op": "' + b"x" * 60_000 + b'", "args": {}}'""",
    'b"\\xff\\xfe not utf-8"',
]


def test_malformed_requests_each_get_an_error_reply(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, """
        from exo_std._kernel import connection
        conn = connection()
        for expr in RAW:
            raw = eval(expr)
            reply = conn.send_raw(raw)
            assert reply.get("ok") is False, (raw[:40], reply)
            assert len(reply.get("message", "")) <= 1024, reply
            print(reply.get("error"))
        from exo_std import process
        print("still served:", process.getpid() > 1)
    """.replace("RAW", repr(MALFORMED)))
    assert status == 0, err
    assert out.count("\n") == len(MALFORMED) + 1, out
    assert "still served: True" in out
    assert "Traceback" not in err


def test_an_unexpected_kernel_exception_is_an_internal_error_reply(
        kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> tuple[object, list[int]]:
        raise ZeroDivisionError("a bug in a handler")

    monkeypatch.setitem(syscalls.HANDLERS, "getpid", broken)
    threads = _syscall_threads()
    status, out, err = run_app(kernel, """
        from exo_std._kernel import call
        from exo_std.errors import ExoError
        for _ in range(3):
            try:
                call("getpid")
            except ExoError as exc:
                print(type(exc).__name__, exc)
        print(call("handles")[0])
    """)
    assert status == 0, err
    assert out.count("InternalError") == 3, out
    assert "[]" in out  # the same thread still served the next call
    assert any("ZeroDivisionError: a bug in a handler" in line for line in kernel.messages)
    assert _syscall_threads() <= threads


def test_control_socket_survives_descriptor_exhaustion(exo_cmd: list[str],
                                                       exo_env: dict[str, str],
                                                       exo_root: Path) -> None:
    """Connections that use up the kernel's descriptors stall the accept loop; when they
    go, the control socket serves again (it used to exit on the first EMFILE)."""
    import resource
    import socket
    import subprocess
    import time

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    kernel = subprocess.Popen([*exo_cmd, "boot", "-q"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=exo_env, preexec_fn=low_limit)
    hogs: list[socket.socket] = []
    try:
        path = exo_root / "var" / "run" / "kernel.sock"
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = 0
        while len(hogs) < 200 and refused < 10:  # far more than the kernel's 64 fds
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.settimeout(0.5)
            try:
                s.connect(str(path))
            except OSError:  # the backlog is full: the kernel is not accepting (yet)
                s.close()
                refused += 1
                time.sleep(0.02)
                continue
            hogs.append(s)
        log = exo_root / "var" / "log" / "kernel.log"
        deadline = time.monotonic() + 10
        while "accept failed" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "accept failed (Too many open files)" in log.read_text()
        for s in hogs:
            s.close()
        hogs.clear()
        ps = subprocess.run([*exo_cmd, "ps", "--json"], env=exo_env, text=True,
                            capture_output=True, timeout=30)
        assert ps.returncode == 0, ps.stderr
        assert '"exo-kernel"' in ps.stdout
        assert "accepting connections again" in log.read_text()
        down = subprocess.run([*exo_cmd, "shutdown"], env=exo_env, capture_output=True,
                              timeout=30)
        assert down.returncode == 0
        kernel.wait(timeout=30)
    finally:
        for s in hogs:
            s.close()
        if kernel.poll() is None:
            kernel.kill()
            kernel.wait()


def test_an_apps_command_line_never_reaches_a_terminal_as_escapes(kernel: Kernel) -> None:
    """A child's argv with a clear-screen, an OSC 52 clipboard write and a fake prompt is
    shown escaped in the kernel log (dmesg) and in ps."""
    evil = "\x1b[2J\x1b[H\x1b]52;c;cm0gLXJmIH4K\x07FAKE-PROMPT# "
    status, _out, err = run_app(kernel, f"""
        from exo_std import process
        pid = process.spawn(["/bin/sleep", "0.5", {evil!r}])
        print(pid)
        import time; time.sleep(0.2)
    """)
    assert status == 0, err
    rows = kernel.api.ps()
    shown = "\n".join(kernel.messages) + "\n".join(str(r["command"]) for r in rows)
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b[2J\\x1b[H\\x1b]52;c;cm0gLXJmIH4K\\x07FAKE-PROMPT# " in "\n".join(kernel.messages)


def test_a_request_too_large_to_send_leaves_the_channel_in_step(kernel: Kernel) -> None:
    """Review finding: a too-large request with descriptors queued them on the socket
    before failing to encode; the next call's reply then did not match its request."""
    status, out, err = run_app(kernel, """
        import os
        from exo_std._kernel import call
        from exo_std.errors import InvalidArgument, RequestTooLarge
        try:
            call("spawn", fds=[0, 1, 2], argv=["/bin/true", "x" * 70000])
        except RequestTooLarge as exc:
            print("refused:", str(exc)[:40])
        r, w = os.pipe()
        print("pid", call("getpid")[0]["pid"] > 1)
        try:  # handles takes no descriptor: refused, and the reply still in step
            call("handles", fds=[r])
        except InvalidArgument as exc:
            print("fds", exc)
    """)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("refused: spawn: message of ") and "exceeds" in lines[0], out
    assert lines[1:] == ["pid True", "fds handles takes 0 descriptors, not 1"], out


def test_a_process_with_thousands_of_handles_can_still_list_them(kernel: Kernel) -> None:
    """4,096 handles with long names make a table far past one 64 KiB reply: exo_std asks
    for it in pages (before, the whole-table reply failed)."""
    (kernel.root / "home" / "a" / ("d" * 200)).mkdir(parents=True, exist_ok=True)
    status, out, err = run_app(kernel, """
        from exo_std import Rights, handles, request_capability
        name = "storage://home/a/" + "d" * 200
        held = [request_capability(name, Rights.READ) for _ in range(1500)]
        listed = handles()
        print(len(listed), len({c.handle for c in listed}))
    """, "storage://home/a=READ,GRANT")
    assert status == 0, err
    assert out.split() == ["1501", "1501"], out
