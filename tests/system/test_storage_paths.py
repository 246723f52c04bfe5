"""Hostile applications against the kernel's storage paths (it runs as root on the host).

Each test is an attack as an app would make it: links planted in its own directory, rights
it does not hold, special files, names it can race. The kernel must refuse with a clear
error and nothing outside what the capability names may be read or written.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from pathlib import Path

import pytest
from tests.system.helpers import run_app

from exo.kernel.kernel import Kernel
from exo.kernel.manifest import parse_grant
from exo.sandbox import SandboxError


def _kernel_fds() -> dict[str, str]:
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return out


def test_grant_through_a_planted_symlink_reaches_nothing_outside(kernel: Kernel,
                                                                 tmp_path: Path) -> None:
    """READ,WRITE,GRANT on a directory; the app links a host directory into it, requests
    the link's name and opens / lists / creates through it: every step past the request
    is refused, /etc/shadow is never read and no host file is written."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("HOST SECRET")
    status, out, err = run_app(kernel, f"""
        import json, os
        from exo_std import fs, Rights, request_capability
        os.symlink("/etc", "/home/demo/etc-link")
        os.symlink("{host}", "/home/demo/host-link")
        out = {{}}
        def attempt(key, fn):
            try:
                out[key] = "DONE " + repr(fn())[:60]
            except Exception as exc:
                out[key] = type(exc).__name__ + ": " + str(exc)
        attempt("request etc", lambda: request_capability("storage://home/demo/etc-link",
                                                          "READ"))
        attempt("request host", lambda: request_capability("storage://home/demo/host-link",
                                                           "READ,WRITE"))
        attempt("read shadow", lambda: fs.File.open("storage://home/demo/etc-link/shadow",
                                                    Rights.READ).read())
        attempt("list etc", lambda: fs.listdir("storage://home/demo/etc-link"))
        attempt("list host", lambda: fs.listdir("storage://home/demo/host-link"))
        attempt("read host", lambda: fs.File.open("storage://home/demo/host-link/secret",
                                                  Rights.READ).read())
        attempt("open link", lambda: fs.File.open("storage://home/demo/etc-link",
                                                  Rights.READ))
        attempt("write host", lambda: fs.File.open("storage://home/demo/host-link/pwned",
                                                   Rights.WRITE, create=True).write("x"))
        print(json.dumps(out))
    """, "storage://home/demo=READ,WRITE,GRANT")
    assert status == 0, err
    results = json.loads(out)
    assert results["request etc"].startswith("DONE")  # a name is only a name...
    assert results["request host"].startswith("DONE")
    for key in ("read shadow", "list etc", "list host", "read host", "open link",
                "write host"):  # ...the kernel never follows the link behind it
        assert results[key].startswith("PermissionError"), (key, results)
        assert "symbolic link" in results[key], (key, results)
    assert "root:" not in out and "HOST SECRET" not in out
    assert sorted(os.listdir(host)) == ["secret"]


def test_read_right_neither_truncates_nor_creates(kernel: Kernel) -> None:
    home = kernel.root / "home" / "demo"
    (home / "keep.txt").write_text("precious")
    code = """
        import json
        from exo_std import fs, Rights
        out = {}
        for key, name, kw in (("truncate", "keep.txt", {"truncate": True}),
                              ("create", "new.txt", {"create": True}),
                              ("both", "new2.txt", {"create": True, "truncate": True})):
            try:
                fs.File.open("storage://home/demo/" + name, Rights.READ, **kw)
                out[key] = "OPENED"
            except Exception as exc:
                out[key] = type(exc).__name__ + ": " + str(exc)
        print(json.dumps(out))
    """
    for grant in ("storage://home/demo=READ", "storage://home/demo=READ,WRITE"):
        status, out, err = run_app(kernel, code, grant)
        assert status == 0, err
        results = json.loads(out)
        for key in ("truncate", "create", "both"):
            assert results[key].startswith("PermissionError"), (grant, results)
            assert "needs WRITE" in results[key]
        assert (home / "keep.txt").read_text() == "precious"
        assert not (home / "new.txt").exists() and not (home / "new2.txt").exists()


def test_opening_a_fifo_fails_at_once_and_leaves_nothing_behind(kernel: Kernel) -> None:
    home = kernel.root / "home" / "demo"
    os.mkfifo(home / "fifo")
    (home / "plain.txt").write_text("plain")
    warm = """
        from exo_std import fs, Rights
        print(fs.File.open("storage://home/demo/plain.txt", Rights.READ).read().decode())
    """
    status, out, err = run_app(kernel, warm, "storage://home/demo=READ,WRITE")
    assert (status, out) == (0, "plain\n"), err
    before = _kernel_fds()
    status, out, err = run_app(kernel, """
        import json
        from exo_std import fs, Rights
        out = {}
        for rights in ("READ", "WRITE", "READ,WRITE"):
            try:
                fs.File.open("storage://home/demo/fifo", rights)
                out[rights] = "OPENED"
            except Exception as exc:
                out[rights] = type(exc).__name__ + ": " + str(exc)
        print(json.dumps(out))
    """, "storage://home/demo=READ,WRITE")
    assert status == 0, err
    results = json.loads(out)
    for rights in ("READ", "WRITE", "READ,WRITE"):
        assert results[rights].startswith(("PermissionError", "OSError")), results
    assert "is a FIFO" in results["READ"], results
    # No syscall thread is left blocked in open(2), and no descriptor is left open.
    assert not any(t.name.startswith("exo-sys-") for t in threading.enumerate())
    after = _kernel_fds()
    assert set(after.items()) <= set(before.items()), (set(before.items()) ^ set(after.items()))


def test_a_planted_symlink_never_becomes_someone_elses_grant(kernel: Kernel) -> None:
    """The app links the Exo /etc and a kernel socket into its own directory; a later grant
    of those sub-paths (an operator's, for another app) is refused, not followed."""
    home = kernel.root / "home" / "demo"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(kernel.root / "var" / "run" / "service.sock"))
    try:
        status, _out, err = run_app(kernel, f"""
            import os
            os.symlink("../../etc", "/home/demo/conf")
            os.symlink("../../var/run/service.sock", "/home/demo/sock")
            os.symlink("{kernel.root / 'etc'}", "/home/demo/abs")
            os.mkdir("/home/demo/sub")
            os.symlink("../../../etc", "/home/demo/sub/deeper")
        """, "storage://home/demo=READ,WRITE")
        assert status == 0, err
        for name in ("conf", "sock", "abs", "sub/deeper", "sub/deeper/passwd"):
            with pytest.raises(SandboxError, match="symbolic link"):
                kernel.processes.spawn(["/bin/true"],
                                       [parse_grant(f"storage://home/demo/{name}=READ")])
        with pytest.raises(SandboxError, match="is a socket"):
            kernel.processes.spawn(["/bin/true"],
                                   [parse_grant("storage://var/run/service.sock=READ")])
    finally:
        listener.close()
    os.mkfifo(home / "pipe")
    with pytest.raises(SandboxError, match="is a FIFO"):
        kernel.processes.spawn(["/bin/true"], [parse_grant("storage://home/demo/pipe=READ")])
    assert kernel.caps.pids() == []  # every refused spawn released its capability space


_FLOOD = """
import os, sys
d = sys.argv[1]
made = 0
for i in range(int(sys.argv[2])):
    with open(f"{d}/f{i:05d}", "w") as fh:
        fh.write("x")
    made += 1
seen = errors = 0
for name in os.listdir(d):  # what `ls -l` does: every name stat'ed
    try:
        os.lstat(f"{d}/{name}")
        seen += 1
    except OSError:
        errors += 1
print(made, seen, errors, flush=True)
sys.stdin.read()  # hold everything until the test is done looking
"""


#: More than an export knows names at once (MAX_NODES, 32,768): they hit ENFILE at
#: 32,766 until the client was asked to drop the oldest (a hostile review, 2026-12-04).
_FILES = 40_000


def test_forty_thousand_files_do_not_exhaust_the_kernels_descriptors(kernel: Kernel
                                                                    ) -> None:
    """An app creates 40,000 files in its grant and stats them all (`ls -l`): the kernel's
    descriptor count stays bounded while it holds them, and another app still runs."""
    from tests.system.helpers import APP_PYTHON

    from exo.kernel.revocable.dirs import MAX_FDS, MAX_HANDLES

    home = kernel.root / "home" / "demo"
    status, _out, err = run_app(kernel, "print('warm')", "storage://home/a=READ")
    assert status == 0, err
    before = len(os.listdir("/proc/self/fd"))
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        proc = kernel.processes.spawn([APP_PYTHON, "-c", _FLOOD, "/home/demo", str(_FILES)],
                                      [parse_grant("storage://home/demo=READ,WRITE")],
                                      stdio=(stdin_r, out_w, null), cwd="/home/demo")
    finally:
        for fd in (stdin_r, out_w, null):
            os.close(fd)
    with os.fdopen(out_r) as out, os.fdopen(stdin_w, "w") as stdin:
        made, seen, errors = (int(x) for x in out.readline().split())
        during = len(os.listdir("/proc/self/fd"))
        st = kernel.files.stats()["dirs"]
        status, out2, err2 = run_app(kernel, "print(len(__import__('os').listdir('.')))",
                                     "storage://home/a=READ")
        stdin.close()
        assert kernel.processes.wait(proc.pid, timeout=60) == 0
    assert (made, seen, errors) == (_FILES, _FILES, 0)
    assert len(os.listdir(home)) == _FILES
    # Held for the export: at most MAX_FDS node descriptors (+ its root), no open file.
    assert during - before <= MAX_FDS + 1 + 16, (before, during, st)
    assert during - before < MAX_FDS + MAX_HANDLES
    assert st["parked"] > 0, st
    assert (status, out2) == (0, "0\n"), err2


def test_boot_raises_the_soft_descriptor_limit_to_the_hard_one(tmp_path: Path) -> None:
    import resource

    from exo.kernel.config import KernelConfig

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 64:
        pytest.skip("needs a finite hard limit above 64")
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    k = Kernel(KernelConfig(root=tmp_path / "root"), ephemeral=True)
    try:
        k.boot()
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        k.shutdown()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
