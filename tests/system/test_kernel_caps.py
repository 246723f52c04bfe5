"""Capabilities as a sandboxed process meets them: every refusal comes from the
kernel's checks (or the Linux kernel), with a clear error, and the kernel stays up."""

from __future__ import annotations

import json
import os
import tempfile
import textwrap

import pytest
from tests.system.helpers import APP_PYTHON, run_app

from exo.kernel.kernel import Kernel


@pytest.fixture(autouse=True)
def _other_apps_secret(kernel: Kernel) -> None:
    (kernel.root / "home" / "b" / "secret.txt").write_text("b's secret\n")


def test_forged_and_guessed_handles_are_refused(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, """
        import random
        from exo_std import handles, Rights
        from exo_std._kernel import call
        from exo_std.errors import InvalidHandle
        mine = handles()[0].handle
        refused = 0
        guesses = [0, 1, 2, 3, mine + 2, mine ^ 0x10, 2**31 - 1, -1]
        guesses += [random.getrandbits(32) | 1 for _ in range(200)]
        for guess in guesses:
            try:
                call("duplicate", handle=guess, rights="READ")
            except InvalidHandle:
                refused += 1
        print("refused", refused, "of", len(guesses))
    """, "storage://home/a=READ,DUPLICATE")
    assert status == 0, err
    assert out.strip() == "refused 208 of 208"


def test_reading_another_apps_files_is_refused_twice(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, """
        from exo_std import fs, Rights
        try:
            fs.File.open("storage://home/b/secret.txt", Rights.READ)
        except PermissionError as exc:
            print("kernel:", exc)
        try:
            open(SECRET).read()
        except OSError as exc:
            print("linux:", type(exc).__name__)
    """.replace("SECRET", repr("/home/b/secret.txt")),
        "storage://home/a=READ,WRITE")
    assert status == 0, err
    assert "kernel: [Errno 13] no capability grants READ on storage://home/b/secret.txt" in out
    assert "linux: FileNotFoundError" in out  # not even mounted in the sandbox


def test_symlink_out_of_the_grant_is_refused_by_openat2(kernel: Kernel) -> None:
    os.symlink(kernel.root / "home" / "b" / "secret.txt", kernel.root / "home" / "a" / "link")
    os.symlink("../b/secret.txt", kernel.root / "home" / "a" / "rel")
    status, out, err = run_app(kernel, """
        from exo_std import fs, Rights
        for name in ("link", "rel"):
            try:
                fs.File.open("storage://home/a/" + name, Rights.READ)
                print(name, "OPENED")
            except PermissionError as exc:
                print(name, "refused")
    """, "storage://home/a=READ")
    assert status == 0, err
    assert out.split() == ["link", "refused", "rel", "refused"]


def test_attenuation_never_adds_rights(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, """
        from exo_std import handles, Rights
        from exo_std.errors import CapabilityError
        cap = handles()[0]
        ro = cap.attenuate(Rights.READ | Rights.DUPLICATE)
        try:
            ro.attenuate(Rights.READ | Rights.WRITE)
        except CapabilityError as exc:
            print("refused:", type(exc).__name__)
    """, "storage://home/a=READ,WRITE,DUPLICATE")
    assert status == 0, err
    assert out.strip() == "refused: RightsEscalation" or "refused:" in out


def test_request_needs_grant_authority(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, """
        from exo_std import request_capability, Rights
        from exo_std.errors import CapabilityError
        sub = request_capability("storage://home/a/sub", Rights.READ)
        print("granted", sub.resource)
        for name in ("storage://home/b", "net://*", "storage://home/a"):
            try:
                request_capability(name, Rights.READ | Rights.WRITE)
                print("GRANTED", name)
            except CapabilityError as exc:
                print("denied", name)
    """, "storage://home/a=READ,GRANT")
    assert status == 0, err
    assert out.splitlines() == ["granted storage://home/a/sub", "denied storage://home/b",
                                "denied net://*", "denied storage://home/a"]


CHILD_CODE = """
import os, sys, time
from exo_std import fs, Rights
f = fs.File.open("storage://home/a/data.txt", Rights.READ)
print("child read:", f.read().decode().strip(), flush=True)
sys.stdin.readline()          # wait for the parent to revoke
try:
    f.seek(0); f.read()
    print("child: READ AFTER REVOKE", flush=True)
except OSError as exc:
    print("child open file:", exc.errno, flush=True)
try:
    fs.File.open("storage://home/a/data.txt", Rights.READ)
    print("child: REOPENED", flush=True)
except Exception as exc:
    print("child reopen:", type(exc).__name__, flush=True)
"""


def test_revocation_reaches_a_child_and_its_open_file(kernel: Kernel) -> None:
    (kernel.root / "home" / "a" / "data.txt").write_text("before revocation\n")
    status, out, err = run_app(kernel, """
        import os, sys
        from exo_std import handles, process, Rights
        cap = handles()[0]
        r, w = os.pipe()
        r2, w2 = os.pipe()
        child_code = CHILD
        pid = process.spawn(["/usr/bin/python3", "-c", child_code],
                            [(cap, Rights.READ | Rights.DUPLICATE)], stdin=r, stdout=w2)
        os.close(r)
        os.close(w2)
        child_out = os.fdopen(r2)
        print(child_out.readline().strip(), flush=True)  # the child has read its file
        print("revoked", cap.revoke(), flush=True)
        os.write(w, b"go\\n")
        print(child_out.read().strip(), flush=True)
        print("child status", process.wait(pid))
    """.replace("CHILD", repr(CHILD_CODE)), "storage://home/a=READ,WRITE,DUPLICATE")
    assert status == 0, err
    assert "child read: before revocation" in out
    assert "child open file: 13" in out, out + err  # EACCES from the revocable file server
    assert "child reopen: PermissionError" in out
    assert "child status 0" in out


def test_send_capability_moves_the_handle(kernel: Kernel) -> None:
    receiver_code = """
        from exo_std import receive_capability
        sender, cap = receive_capability(timeout=30)
        print("got", cap.resource, "from", sender)
    """
    with tempfile.TemporaryFile() as out:
        receiver = kernel.processes.spawn([APP_PYTHON, "-c", textwrap.dedent(receiver_code)], [],
                                          stdio=(0, out.fileno(), out.fileno()))
        status, sout, serr = run_app(kernel, f"""
            from exo_std import handles, send_capability, Rights
            from exo_std.errors import InvalidHandle
            cap = handles()[0]
            send_capability({receiver.pid}, cap)
            try:
                cap.attenuate(Rights.READ)
            except InvalidHandle:
                print("sender handle gone")
            print("left", len(handles()))
        """, "storage://home/a=READ,TRANSFER,DUPLICATE")
        assert kernel.processes.wait(receiver.pid, timeout=60) == 0
        out.seek(0)
        got = out.read().decode()
    assert status == 0, serr
    assert sout.split("\n")[:2] == ["sender handle gone", "left 0"]
    assert "got storage://home/a from" in got


def test_transfer_needs_transfer_right(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, """
        from exo_std import handles, send_capability
        from exo_std.errors import CapabilityError
        try:
            send_capability(1, handles()[0])
        except CapabilityError as exc:
            print("refused", type(exc).__name__)
    """, "storage://home/a=READ")
    assert status == 0, err
    assert out.startswith("refused")


def test_malformed_syscalls_get_errors_and_the_kernel_stays_up(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, """
        from exo_std._kernel import connection
        ask = connection().send_raw
        print(ask(b"not json")["error"])
        print(ask(b"[1,2]")["error"])
        print(ask(b'{"id":1,"op":"nosuch","args":{}}')["message"])
        print(ask(b'{"id":2,"op":"duplicate","args":{"handle":"x","rights":"READ"}}')["error"])
        print(ask(b'{"id":3,"op":"duplicate","args":{}}')["message"])
        print(ask(b'{"id":4,"op":"open","args":{"name":"storage://../../etc","rights":"READ"}}')["error"])
        print(ask(b'{"id":5,"op":"getpid","args":{}}')["ok"])
    """, "storage://home/a=READ")
    assert status == 0, err
    assert out.splitlines() == [
        "ProtocolError", "ProtocolError", "unknown syscall 'nosuch'", "TypeError",
        "missing argument 'handle'", "InvalidResourceName", "True"]


def test_processes_cannot_see_or_signal_the_kernel(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, f"""
        import os, signal
        try:
            os.kill({os.getpid()}, signal.SIGKILL)
            print("KILLED?")
        except ProcessLookupError:
            print("no such process")
        print(sorted(p for p in os.listdir("/proc") if p.isdigit())[:5])
    """)
    assert status == 0, err
    assert out.splitlines()[0] == "no such process"


def test_exit_reclaims_everything(kernel: Kernel) -> None:
    status, _, err = run_app(kernel, """
        from exo_std import handles, fs, Rights
        f = fs.File.open("storage://home/a/x", Rights.WRITE, create=True)
        f.write("x")
    """, "storage://home/a=READ,WRITE")
    assert status == 0, err
    assert kernel.caps.pids() == []
    assert kernel.files.count() == 0
    assert kernel.processes.live() == []


def test_bootstrap_channel_is_the_only_extra_fd(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, """
        import os
        print(sorted(int(f) for f in os.listdir("/proc/self/fd")))
        print(os.environ["EXO_BOOTSTRAP_FD"] + "," + os.environ["EXO_BOOTSTRAP_RING"])
    """)
    assert status == 0, err
    fds, channel = out.splitlines()
    listed = set(json.loads(fds))
    expected = {0, 1, 2} | {int(x) for x in channel.split(",")}
    # One more descriptor is the directory listing itself (os.listdir's own fd).
    assert expected <= listed and len(listed - expected) <= 1, (listed, expected)
