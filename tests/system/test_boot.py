"""Boot Exo-OS for real, non-interactively, and check what a user sees."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
from tests.system.helpers import exo_cgroups, mounts, shm_entries


def boot(exo_cmd: list[str], env: dict[str, str], script: str, *args: str,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*exo_cmd, "boot", *args], input=script, env=env, text=True,
                          capture_output=True, timeout=timeout)


def test_piped_script_prints_boot_log_listing_and_output(exo_cmd: list[str],
                                                         exo_env: dict[str, str]) -> None:
    r = boot(exo_cmd, exo_env, "ls /\necho hello\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"Exo-OS \d+\.\d+\.\d+\S* \((x86_64|aarch64|\w+)\)", lines[0])
    step_lines = [ln for ln in lines if re.match(r"\[(  OK  |FAILED| SKIP )\] ", ln)]
    assert len(step_lines) >= 6
    assert any(re.fullmatch(r"Boot time: \d+ ms", ln) for ln in lines)
    assert "Development mode: root logs in without a password" in r.stdout
    listing = lines[lines.index("bin"):lines.index("bin") + 11]
    assert listing == ["bin", "dev", "etc", "exo", "home", "lib", "proc", "sys", "tmp", "usr",
                       "var"]
    assert lines[-1] == "hello"
    assert "[FAILED]" not in r.stdout


def test_exit_status_is_the_last_commands(exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    assert boot(exo_cmd, exo_env, "echo a\nfalse\n", "--quiet").returncode == 1
    r = boot(exo_cmd, exo_env, "nosuch\n", "--quiet")
    assert r.returncode == 127
    assert r.stderr.strip() == "exo: nosuch: command not found"
    assert boot(exo_cmd, exo_env, "exit 7\necho not reached\n", "-q").returncode == 7


def test_quiet_prints_only_command_output(exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    r = boot(exo_cmd, exo_env, "echo only this\n", "--quiet")
    assert r.stdout == "only this\n"


def test_json_boot(exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    r = boot(exo_cmd, exo_env, "", "--json-boot")
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert data["boot_ms"] > 0
    assert set(data["phases"]) == {"CRITICAL", "NORMAL", "DEFERRED"}
    names = {s["name"] for s in data["steps"]}
    assert {"Exo tree", "Capability space", "Processes and sandbox"} <= names
    assert {s["status"] for s in data["steps"]} <= {"OK", "SKIP"}


def test_tree_is_created_under_exo_root(exo_cmd: list[str], exo_env: dict[str, str],
                                        exo_root: Path) -> None:
    boot(exo_cmd, exo_env, "true\n", "-q")
    assert sorted(p.name for p in exo_root.iterdir()) == [
        "bin", "dev", "etc", "exo", "home", "lib", "proc", "sys", "tmp", "usr", "var"]
    assert (exo_root / "etc" / "passwd").read_text().startswith("root::0:0:")


def test_root_option_overrides_environment(exo_cmd: list[str], exo_env: dict[str, str],
                                           tmp_path: Path) -> None:
    other = tmp_path / "other-root"
    r = boot(exo_cmd, exo_env, "cat /sys/kernel/root\n", "-q", "--root", str(other))
    assert r.stdout.strip() == str(other)
    r = boot(exo_cmd, exo_env, "cat /sys/kernel/root\n", f"--root={other}2", "--quiet")
    assert r.stdout.strip() == f"{other}2"


def test_bad_boot_options_get_one_clear_error(exo_cmd: list[str],
                                              exo_env: dict[str, str]) -> None:
    for args in (["--bogus"], ["--root"], ["-q", "extra"]):
        r = boot(exo_cmd, exo_env, "echo never\n", *args)
        assert r.returncode == 2, args
        assert "never" not in r.stdout
        assert "Error:" in r.stderr, r.stderr


def test_sigterm_stops_everything_and_leaves_nothing(exo_cmd: list[str],
                                                     exo_env: dict[str, str],
                                                     exo_root: Path) -> None:
    shm_before = shm_entries()
    proc = subprocess.Popen([*exo_cmd, "boot", "-q"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=exo_env,
                            text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("cat /sys/kernel/boot_id\n")
    proc.stdin.write("run --cap storage://tmp=READ,WRITE -- /bin/sleep 60 &&"
                     " echo should-not-print\n")
    proc.stdin.flush()
    boot_id = proc.stdout.readline().strip()
    kernel = psutil.Process(proc.pid)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until the sandboxed sleep is running
        descendants = kernel.children(recursive=True)
        if any(_cmdline(p)[:1] == ["/bin/sleep"] for p in descendants):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError("the sandboxed process never started")
    assert (exo_root / "var" / "run" / "kernel.sock").exists()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "should-not-print" not in out
    time.sleep(0.2)
    assert [p.pid for p in descendants if p.is_running() and p.status() != "zombie"] == []
    assert shm_entries() == shm_before
    assert [m for m in mounts() if str(exo_root) in m or boot_id in m] == []
    assert not (exo_root / "var" / "run" / "kernel.sock").exists()
    assert exo_cgroups(boot_id) == []


def test_shutdown_command_in_the_shell(exo_cmd: list[str], exo_env: dict[str, str],
                                       exo_root: Path) -> None:
    r = boot(exo_cmd, exo_env, "echo before\nexo shutdown\necho after\n", "-q")
    assert r.returncode == 0
    assert r.stdout == "before\n"
    assert not (exo_root / "var" / "run" / "kernel.sock").exists()


def test_help_and_version(exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    def exo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*exo_cmd, *args], env=exo_env, text=True, capture_output=True,
                              timeout=30)

    r = exo("--version")
    assert r.returncode == 0 and re.search(r"\d+\.\d+\.\d+", r.stdout)
    top = exo("--help")
    assert top.returncode == 0
    for sub in ("boot", "run", "shutdown", "ps"):
        assert sub in top.stdout
        h = exo(sub, "--help")
        assert h.returncode == 0 and "Usage:" in h.stdout, sub
    bad = exo("nosuchcommand")
    assert bad.returncode != 0 and "No such command" in bad.stderr


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return list(p.cmdline())
    except psutil.Error:
        return []


def test_commands_read_the_scripts_next_lines_like_sh(exo_cmd: list[str],
                                                      exo_env: dict[str, str],
                                                      exo_root: Path, tmp_path: Path) -> None:
    # From a pipe: useradd takes its password from the line after it, and the script goes on.
    r = boot(exo_cmd, exo_env, "useradd bob\nhunter2\nwhoami\n", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["user bob created (uid 1000, home /home/bob)", "root"]
    assert "bob:$scrypt$" in (exo_root / "etc" / "passwd").read_text()
    # From a file (seekable): cat reads the rest of the script, as under bash < script.
    script = tmp_path / "s.sh"
    script.write_text("echo first\ncat\nnot a command\n")
    with script.open() as fh:
        r2 = subprocess.run([*exo_cmd, "boot", "-q"], stdin=fh, env=exo_env, text=True,
                            capture_output=True, timeout=60)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.splitlines() == ["first", "not a command"]
