"""The Debian bridge: real Debian packages fetched with apt, their dependencies solved
with libsolv and bundled, installed as signed .exopkgs and run sandboxed."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXO = [sys.executable, "-m", "exo"]


def _need_apt() -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("not a Debian host")


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, EXO_ROOT=str(tmp_path / "root"), COLUMNS="200")
    env.pop("EXO_PKG_CRASH_AT", None)
    return env


def _install(tmp_path: Path, *names: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*EXO, "install", "-y", "--from-debian", *names], env=_env(tmp_path),
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    if "apt-get download" in r.stderr:
        pytest.skip(f"apt cannot fetch here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    return r


def test_sqlite3_bundles_its_library_and_runs_sandboxed(tmp_path: Path) -> None:
    _need_apt()
    r = _install(tmp_path, "sqlite3")
    assert "storage://home/sqlite3=READ,WRITE" in r.stdout  # shown before installing
    root = tmp_path / "root"
    app = next((root / "exo" / "apps" / "sqlite3").iterdir())
    assert list(app.glob("usr/lib/*/libsqlite3.so.0*"))  # libsqlite3-0: bundled
    assert not list(app.glob("usr/lib/*/libc.so.6"))  # libc6: the host's base system
    assert not (app / "usr" / "share" / "doc").exists()
    sqlite = root / "exo" / "bin" / "sqlite3"
    out = subprocess.run([str(sqlite), ":memory:", "select 6*7;"], env=_env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.stdout == "42\n", out.stderr
    # the same version again: bridged once, nothing to do
    again = _install(tmp_path, "sqlite3")
    assert "already there" in again.stdout and "nothing to do" in again.stdout
    assert "all files match" in subprocess.run(
        [*EXO, "verify", "sqlite3"], env=_env(tmp_path), capture_output=True, text=True,
        timeout=120).stdout


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_redis_server_installs_with_its_dependencies_and_serves(tmp_path: Path) -> None:
    """redis-server's program is a link into redis-tools, which needs libjemalloc2 and
    liblzf1: all bundled, the manifest grants the port of redis's own configuration, and
    redis-cli on the host talks to the sandboxed server."""
    _need_apt()
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli (redis-tools) is not on this host")
    if not _free(6379):
        pytest.skip("port 6379 is in use on this host")
    r = _install(tmp_path, "redis-server")
    assert "net://127.0.0.1:6379=SEND,RECV" in r.stdout
    assert "storage://home/redis-server=READ,WRITE" in r.stdout
    root = tmp_path / "root"
    manifest = next((root / "exo" / "apps" / "redis-server").iterdir()) / ".exo/exopkg.toml"
    text = manifest.read_text()
    assert "redis-tools 5:" in text and "libjemalloc2" in text and "libc6" not in text

    log = tmp_path / "redis.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [str(root / "exo" / "bin" / "redis-server"), "--bind", "127.0.0.1",
             "--dir", "/home/redis-server"], env=_env(tmp_path), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)

    def cli(*words: str) -> str:
        return subprocess.run(["redis-cli", "-p", "6379", *words], capture_output=True,
                              text=True, timeout=30).stdout.strip()

    try:
        deadline = time.monotonic() + 60
        while cli("ping") != "PONG":
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        assert cli("set", "exo", "os") == "OK" and cli("get", "exo") == "os"
        pid = int(cli("info", "server").split("process_id:")[1].split()[0])
        assert pid > 1  # pid inside its namespace: find the host's by the command line
        host_pid = next(int(p) for p in os.listdir("/proc") if p.isdigit()
                        and _cmdline(int(p)).startswith("/exo/apps/redis-server/"))
        maps = Path(f"/proc/{host_pid}/maps").read_text()
        assert "/exo/apps/redis-server/" in maps and "libjemalloc.so.2" in maps
        assert cli("save") == "OK"
        assert (root / "home" / "redis-server" / "dump.rdb").is_file()
    finally:
        cli("shutdown", "nosave")
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_unknown_debian_package_is_one_line(tmp_path: Path) -> None:
    _need_apt()
    r = subprocess.run([*EXO, "install", "-y", "--from-debian", "no-such-package-exo"],
                       env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert r.stderr == "exo: no Debian package named 'no-such-package-exo' " \
        "(apt-cache policy no-such-package-exo)\n"


NGINX_CONF = """user root root;
daemon off;
master_process off;
pid /home/nginx/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path /home/nginx/tmp/body;
  proxy_temp_path /home/nginx/tmp/proxy;
  fastcgi_temp_path /home/nginx/tmp/fastcgi;
  uwsgi_temp_path /home/nginx/tmp/uwsgi;
  scgi_temp_path /home/nginx/tmp/scgi;
  server { listen 127.0.0.1:8080; root /home/nginx/www; }
}
"""


def test_nginx_serves_from_its_own_area(tmp_path: Path) -> None:
    """nginx (with nginx-common bundled) serves a page from storage://home/nginx on the
    port its generated manifest grants (8080: its configuration's port 80 is privileged)."""
    _need_apt()
    if not _free(8080):
        pytest.skip("port 8080 is in use on this host")
    r = _install(tmp_path, "nginx")
    assert "net://127.0.0.1:8080=SEND,RECV" in r.stdout
    home = tmp_path / "root" / "home" / "nginx"  # created at install: the manifest's area
    (home / "www").mkdir()
    (home / "tmp").mkdir()
    (home / "www" / "index.html").write_text("served by a bridged nginx\n")
    (home / "nginx.conf").write_text(NGINX_CONF)
    log = tmp_path / "nginx.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [str(tmp_path / "root/exo/bin/nginx"), "-p", "/home/nginx", "-c",
             "/home/nginx/nginx.conf"], env=_env(tmp_path), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while _free(8080):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nginx did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        with urllib.request.urlopen("http://127.0.0.1:8080/", timeout=30) as resp:
            assert resp.read() == b"served by a bridged nginx\n"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
