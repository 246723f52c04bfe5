"""The Hybrid broker inside ``posix-x run`` (issue 10): execve, bind and connect are
decided by the kernel from the process's grants, performed by the kernel where an
address is involved, and every refusal is in the audit log."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from exo.posix_x import broker

pytestmark = pytest.mark.skipif(not broker.supported(),
                                reason="no seccomp user notification or no python3 here")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run(exo_cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*exo_cmd, "posix-x", "run", *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def _denials(root: Path) -> list[str]:
    path = root / "var/log/audit-deny.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["reason"] for line in path.read_text().splitlines()]


NET_PROGRAM = """
import errno, socket, sys
port = int(sys.argv[1])
def attempt(what, fn):
    try:
        fn()
        print(what, "ok")
    except OSError as e:
        print(what, errno.errorcode[e.errno])
s = socket.socket()
attempt("bind-any", lambda: s.bind(("0.0.0.0", port)))
attempt("bind-loopback", lambda: s.bind(("127.0.0.1", port)))
s.listen()
c = socket.socket()
attempt("connect-granted", lambda: c.connect(("127.0.0.1", port)))
conn, _ = s.accept()
c.sendall(b"ping")
print("received", conn.recv(4).decode())
attempt("connect-other", lambda: socket.socket().connect(("127.0.0.1", port + 1)))
u = socket.socket(socket.AF_INET6)
attempt("bind-v6-any", lambda: u.bind(("::", port)))
"""


def test_bind_and_connect_are_checked_and_performed_by_the_kernel(
        exo_cmd: list[str], exo_env: dict[str, str], exo_root: Path, tmp_path: Path) -> None:
    port = _free_port()
    manifest = tmp_path / "net.toml"
    manifest.write_text(f"[posix_x]\nnetwork = [{port}]\n")
    done = _run(exo_cmd, exo_env, "--manifest", str(manifest), "--", "/usr/bin/python3",
                "-c", NET_PROGRAM, str(port))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # Landlock alone would have let 0.0.0.0 through (it filters ports, not addresses).
    assert lines == ["bind-any EACCES", "bind-loopback ok", "connect-granted ok",
                     "received ping", "connect-other EACCES", "bind-v6-any EACCES"]
    denials = _denials(exo_root)
    assert any(f"bind(0.0.0.0:{port}) refused (EACCES); only loopback" in d for d in denials)
    assert any(f"connect(127.0.0.1:{port + 1}) refused (EACCES); allowed by [posix_x] "
               f"network = [{port + 1}]" in d for d in denials)


def test_exec_outside_the_policy_is_refused_and_audited(
        exo_cmd: list[str], exo_env: dict[str, str], exo_root: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "sh.toml"
    manifest.write_text('[posix_x]\nfork = true\nexec = ["/bin/echo"]\n')
    done = _run(exo_cmd, exo_env, "--manifest", str(manifest), "--", "/bin/sh", "-c",
                "/bin/echo allowed; /usr/bin/id; /usr/bin/python3 -c 'print(1)'; "
                "/no/such/program; echo done")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "allowed\ndone\n"
    assert "/usr/bin/id: Permission denied" in done.stderr
    # The shim's interpreter is not the program's: python3 stays refused.
    assert "python3: Permission denied" in done.stderr
    assert "/no/such/program: not found" in done.stderr  # Linux's ENOENT, not a refusal
    denials = _denials(exo_root)
    assert any('execve(/usr/bin/id) refused (EACCES); allowed by [posix_x] exec = '
               '["/usr/bin/id"]' in d for d in denials)
    assert not any("/no/such/program" in d for d in denials)


def test_exec_true_and_a_missing_program(exo_cmd: list[str], exo_env: dict[str, str],
                                         tmp_path: Path) -> None:
    manifest = tmp_path / "any.toml"
    manifest.write_text("[posix_x]\nfork = true\nexec = true\n")
    done = _run(exo_cmd, exo_env, "--manifest", str(manifest), "--", "/bin/sh", "-c",
                "/usr/bin/id -u >/dev/null && echo ran")
    assert (done.returncode, done.stdout) == (0, "ran\n"), done.stderr
    done = _run(exo_cmd, exo_env, "--", "/no/such/program")
    assert done.returncode == 127 and done.stderr.count("\n") == 1


LEGACY_PROGRAM = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
for name, nr in (("mount", 165), ("ptrace", 101), ("bpf", 321), ("uselib", 134)):
    result = libc.syscall(nr, 0, 0, 0, 0, 0)
    print(name, result, errno.errorcode[ctypes.get_errno()])
"""


def test_legacy_calls_get_the_tables_errno_and_are_audited(
        exo_cmd: list[str], exo_env: dict[str, str], exo_root: Path) -> None:
    from exo.posix_x import table

    done = _run(exo_cmd, exo_env, "--", "/usr/bin/python3", "-c", LEGACY_PROGRAM)
    assert done.returncode == 0, done.stderr
    expected = [f"{n} -1 {table.lookup(n).errno}"  # type: ignore[union-attr]
                for n in ("mount", "ptrace", "bpf", "uselib")]
    assert done.stdout.splitlines() == expected
    assert "uselib -1 ENOSYS" in done.stdout  # removed from Linux: its own answer
    denials = _denials(exo_root)
    for name in ("mount", "ptrace", "bpf", "uselib"):
        assert any(d.startswith(f"posix-x: {name}() refused (") and "Legacy: " in d
                   for d in denials), name
