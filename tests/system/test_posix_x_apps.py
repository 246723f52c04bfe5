"""Real Linux applications under ``exo posix-x run`` (issue 10's targets).

Each application runs unmodified from Debian's packages with the manifest in
``examples/posix-x/`` (its port moved to a free one), does its job, and is refused one
thing its manifest does not grant. The packages come from ``make posix-x-apps``; a test
whose application is missing is skipped saying so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from tests.system.helpers import booted_kernel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "posix-x"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None and not Path(p).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: run `make posix-x-apps` (apt)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _manifest(tmp: Path, name: str, old_port: int, port: int) -> Path:
    """The example manifest ``name`` with its port moved to ``port`` (tests run side by
    side with other sessions' servers)."""
    text = (EXAMPLES / f"{name}.toml").read_text().replace(str(old_port), str(port))
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return path


def _run(exo_cmd: list[str], env: dict[str, str], *args: str,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*exo_cmd, "posix-x", "run", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@contextlib.contextmanager
def _server(exo_cmd: list[str], env: dict[str, str], port: int, log: Path, *args: str):  # type: ignore[no-untyped-def]
    """``posix-x run ARGS`` in the background until ``port`` answers; interrupted (Ctrl-C:
    the kernel kills the sandbox and shuts down) and waited for on the way out."""
    with open(log, "w") as out:
        proc = subprocess.Popen([*exo_cmd, "posix-x", "run", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start (status {proc.poll()}): "
                            f"{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_redis_answers_and_cannot_write_outside_its_directory(
        exo_root: Path, exo_env: dict[str, str], exo_cmd: list[str], tmp_path: Path) -> None:
    _need("redis-server", "redis-cli")
    port = _free_port()
    manifest = _manifest(tmp_path, "redis", 16379, port)

    def cli(*words: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(port), *words], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()

    with _server(exo_cmd, exo_env, port, tmp_path / "redis.log", "--manifest", str(manifest),
                 "--", "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                 "--dir", "/var/lib/redis", "--daemonize", "no",
                 "--enable-protected-configs", "yes"):
        assert cli("PING") == "PONG"
        assert cli("SET", "greeting", "hello") == "OK"
        assert cli("GET", "greeting") == "hello"
        assert cli("SAVE") == "OK"
        assert (exo_root / "var/lib/redis/dump.rdb").is_file()
        # Refused: a dump anywhere else (the directory is visible, read-only).
        assert cli("CONFIG", "SET", "dir", "/usr/lib") == "OK"
        assert cli("SAVE").startswith("ERR")
    assert "Read-only file system" in (tmp_path / "redis.log").read_text()


def test_nginx_serves_its_root_and_nothing_outside(
        exo_root: Path, exo_env: dict[str, str], exo_cmd: list[str], tmp_path: Path) -> None:
    _need("nginx")
    port = _free_port()
    manifest = _manifest(tmp_path, "nginx", 18080, port)
    (exo_root / "srv/nginx").mkdir(parents=True)
    (exo_root / "srv/www").mkdir()
    conf = (EXAMPLES / "nginx.conf").read_text().replace("18080", str(port))
    (exo_root / "srv/nginx/nginx.conf").write_text(conf)
    (exo_root / "srv/www/index.html").write_text("hello from nginx under POSIX-X\n")
    (exo_root / "srv/secret.txt").write_text("not granted\n")
    os.symlink("../secret.txt", exo_root / "srv/www/leak.txt")

    def get(path: str) -> tuple[int, str]:
        done = subprocess.run(["curl", "-s", "--path-as-is", "-w", "%{http_code}",
                               f"http://127.0.0.1:{port}{path}"], capture_output=True,
                              text=True, timeout=10, check=True)
        return int(done.stdout[-3:]), done.stdout[:-3]

    with _server(exo_cmd, exo_env, port, tmp_path / "nginx.log", "--manifest", str(manifest),
                 "--", "nginx", "-c", "/srv/nginx/nginx.conf",
                 "-e", "/var/lib/nginx/error.log"):
        assert get("/") == (200, "hello from nginx under POSIX-X\n")
        # Refused: a link out of its root to a file it holds no capability for.
        code, body = get("/leak.txt")
        assert code == 404 and "not granted" not in body
    assert 'open() "/srv/www/leak.txt" failed (2: No such file or directory)' in \
        (exo_root / "var/lib/nginx/error.log").read_text()


def test_postgres_runs_a_query_and_cannot_write_outside_its_data(
        exo_root: Path, exo_env: dict[str, str], exo_cmd: list[str], tmp_path: Path) -> None:
    _need(str(PG_BIN / "postgres"), "psql")
    port = _free_port()
    manifest = _manifest(tmp_path, "postgres", 15432, port)
    init = _run(exo_cmd, exo_env, "--manifest", str(manifest), "--",
                str(PG_BIN / "initdb"), "-D", "/var/lib/postgresql/data", "-U", "postgres",
                "-A", "trust", "--no-sync")
    assert init.returncode == 0, init.stdout + init.stderr
    assert (exo_root / "var/lib/postgresql/data/PG_VERSION").is_file()

    def sql(query: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                               "-AtXc", query], capture_output=True, text=True, timeout=20,
                              check=False)

    with _server(exo_cmd, exo_env, port, tmp_path / "pg.log", "--manifest", str(manifest),
                 "--", str(PG_BIN / "postgres"), "-D", "/var/lib/postgresql/data",
                 "-k", "/var/lib/postgresql", "-h", "127.0.0.1", "-p", str(port)):
        sql("CREATE TABLE t (n int)")
        sql("INSERT INTO t SELECT generate_series(1, 100)")
        done = sql("SELECT sum(n), current_user FROM t")
        assert done.stdout.strip() == "5050|postgres", done.stderr
        # Refused: writing a file outside its data directory (a superuser may COPY TO).
        refused = sql("COPY t TO '/usr/lib/stolen.csv'")
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr


def test_gcc_builds_a_program_that_then_runs(
        exo_root: Path, exo_env: dict[str, str], exo_cmd: list[str], tmp_path: Path) -> None:
    _need("gcc")
    work = exo_root / "home/dev"
    work.mkdir(parents=True)
    (work / "hello.c").write_text('#include <stdio.h>\nint main(void) '
                                  '{ printf("built under POSIX-X: %d\\n", 6 * 7); return 0; }\n')
    manifest = tmp_path / "gcc.toml"
    manifest.write_text('[sandbox]\ncapabilities = ["storage://home/dev=READ,WRITE,EXECUTE"]\n'
                        "[posix_x]\nfork = true\nexec = true\n")
    built = _run(exo_cmd, exo_env, "--manifest", str(manifest), "--cwd", "/home/dev", "--",
                 "gcc", "-O2", "-o", "hello", "hello.c")
    assert built.returncode == 0, built.stderr
    ran = _run(exo_cmd, exo_env, "--manifest", str(manifest), "--", "/home/dev/hello")
    assert (ran.returncode, ran.stdout) == (0, "built under POSIX-X: 42\n")
    # Refused: installing it outside its directory.
    refused = _run(exo_cmd, exo_env, "--manifest", str(manifest), "--cwd", "/home/dev", "--",
                   "gcc", "-o", "/usr/local/bin/hello", "hello.c")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr


def test_python_runs_a_script_without_fork_or_exec(
        exo_root: Path, exo_env: dict[str, str], exo_cmd: list[str]) -> None:
    work = exo_root / "home/dev"
    work.mkdir(parents=True)
    (work / "script.py").write_text(
        "import os, subprocess\n"
        "print(sum(range(10)))\n"
        "for attempt in (lambda: open('/etc/shadow'), os.fork,\n"
        "                lambda: subprocess.run(['/bin/true'])):\n"
        "    try:\n"
        "        attempt()\n"
        "        print('allowed')\n"
        "    except OSError as exc:\n"
        "        print(type(exc).__name__)\n")
    done = _run(exo_cmd, exo_env, "--cap", "storage://home/dev=READ", "--", "python3",
                "/home/dev/script.py")
    assert done.returncode == 0, done.stderr
    # /etc/shadow is not there; [posix_x] fork defaults to false (EAGAIN), and so the
    # subprocess cannot start either.
    assert done.stdout.split() == ["45", "FileNotFoundError", "BlockingIOError",
                                   "BlockingIOError"]


def test_exec_policy_refuses_programs_not_listed(
        exo_root: Path, exo_env: dict[str, str], exo_cmd: list[str], tmp_path: Path) -> None:
    manifest = tmp_path / "sh.toml"
    manifest.write_text('[posix_x]\nfork = true\nexec = ["/usr/bin/echo"]\n')
    done = _run(exo_cmd, exo_env, "--manifest", str(manifest), "--", "/bin/sh", "-c",
                "/usr/bin/echo listed; /usr/bin/id -u")
    assert done.stdout == "listed\n"
    assert "Permission denied" in done.stderr and done.returncode == 126


def test_failed_starts_are_one_line_naming_what_would_allow_it(
        exo_root: Path, exo_env: dict[str, str], exo_cmd: list[str], tmp_path: Path) -> None:
    missing = _run(exo_cmd, exo_env, "--", "no-such-program-here")
    assert missing.returncode == 127
    assert missing.stderr.count("\n") == 1 and "no such program" in missing.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text("[posix_x]\nforks = true\n")
    refused = _run(exo_cmd, exo_env, "--manifest", str(bad), "--", "true")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "posix_x" in refused.stderr and "forks" in refused.stderr

    secret = tmp_path / "secret.toml"
    secret.write_text('[posix_x]\netc = ["/etc/shadow"]\n')
    refused = _run(exo_cmd, exo_env, "--manifest", str(secret), "--", "true")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "/etc/shadow is never shown" in refused.stderr

    (exo_root / "home/dev").mkdir(parents=True)
    script = exo_root / "home/dev/tool.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    noexec = _run(exo_cmd, exo_env, "--cap", "storage://home/dev=READ", "--",
                  "/home/dev/tool.sh")
    assert noexec.returncode == 126 and noexec.stderr.count("\n") == 1
    assert "EXECUTE" in noexec.stderr


def test_network_is_only_the_granted_ports(
        exo_root: Path, exo_env: dict[str, str], exo_cmd: list[str], tmp_path: Path) -> None:
    granted, other = _free_port(), _free_port()
    manifest = tmp_path / "net.toml"
    manifest.write_text(f"[posix_x]\nnetwork = [{granted}]\n")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", other))
        listener.listen()
        done = _run(exo_cmd, exo_env, "--manifest", str(manifest), "--", "python3", "-c",
                    "import socket\n"
                    f"socket.create_server(('127.0.0.1', {granted})).close()\n"
                    "print('bound')\n"
                    "try:\n"
                    f"    socket.create_connection(('127.0.0.1', {other}), timeout=5)\n"
                    "except OSError as exc:\n"
                    "    print(type(exc).__name__)\n")
    assert done.stdout.split() == ["bound", "PermissionError"], done.stderr


def test_a_program_that_refuses_root_runs_as_its_user_without_capabilities(
        exo_root: Path, exo_env: dict[str, str], exo_cmd: list[str], tmp_path: Path) -> None:
    manifest = tmp_path / "user.toml"
    manifest.write_text('[posix_x]\nuser = "postgres"\n')
    done = _run(exo_cmd, exo_env, "--manifest", str(manifest), "--", "python3", "-c",
                "import os, pwd\n"
                "print(os.getuid(), pwd.getpwuid(os.getuid()).pw_name)\n"
                "print([l.split()[1] for l in open('/proc/self/status')\n"
                "       if l.startswith(('CapEff', 'CapPrm'))])\n")
    uid, name, *caps = done.stdout.split()
    assert (name, int(uid) > 0) == ("postgres", True), done.stderr
    assert "".join(caps) == "['0000000000000000','0000000000000000']"
    # Its user namespace gives it nothing: back to uid 0, a namespace of its own, a mount,
    # the host's secrets are all still refused.
    done = _run(exo_cmd, exo_env, "--manifest", str(manifest), "--", "python3", "-c",
                "import ctypes, os\n"
                "libc = ctypes.CDLL(None, use_errno=True)\n"
                "for name, call in (('setuid', lambda: libc.setuid(0)),\n"
                "                   ('unshare', lambda: libc.unshare(0x10000000)),\n"
                "                   ('mount', lambda: libc.mount(b'none', b'/tmp', b'tmpfs',"
                " 0, None))):\n"
                "    print(name, call(), os.strerror(ctypes.get_errno()))\n"
                "print(os.path.exists('/etc/shadow'), os.getuid())\n")
    lines = done.stdout.splitlines()
    # setuid(0): uid 0 does not even exist in its namespace (EINVAL)
    assert lines[:3] == ["setuid -1 Invalid argument",
                         "unshare -1 Operation not permitted",
                         "mount -1 Operation not permitted"], done.stderr
    assert lines[3] == f"False {uid}"


def test_run_goes_through_the_running_kernel(
        exo_root: Path, exo_env: dict[str, str], exo_cmd: list[str]) -> None:
    """With a kernel running on the root, ``posix-x run`` is its control socket's run, and
    the ``[posix_x]`` defaults still apply there (no fork)."""
    with booted_kernel(exo_cmd, exo_env, exo_root) as kernel:
        done = _run(exo_cmd, exo_env, "--", "python3", "-c",
                    "import os\ntry:\n    os.fork()\nexcept OSError as exc:\n"
                    "    print(type(exc).__name__, os.environ['EXO_PID'])\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[0] == "BlockingIOError"
        down = subprocess.run([*exo_cmd, "shutdown"], env=exo_env, text=True,
                              capture_output=True, timeout=30, check=False)
        assert down.returncode == 0, down.stderr
        kernel.wait(timeout=30)
