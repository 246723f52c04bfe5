"""``posix-x profile``, ``migrate`` and ``benchmark`` (issue 10), on the host through
``exo posix-x`` and in the Exo shell: real programs traced by strace in their real
sandbox."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from exo.kernel.kernel import Kernel
from exo.kernel.manifest import load_manifest
from exo.kernel.users import UserDatabase, session_grants
from exo.shell import Shell
from exo.shell.session import Session
from exo.shell.vfs import Vfs

pytestmark = pytest.mark.skipif(shutil.which("strace") is None,
                                reason="strace not installed (make posix-x-apps)")


def _px(exo_cmd: list[str], env: dict[str, str], *args: str,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*exo_cmd, "posix-x", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_profile_counts_tiers_and_suggests_fork(exo_cmd: list[str],
                                                exo_env: dict[str, str]) -> None:
    # 200 small writes, then a fork the default manifest refuses.
    done = _px(exo_cmd, exo_env, "profile", "--", "/bin/sh", "-c",
               'i=0; while [ $i -lt 200 ]; do echo x; i=$((i+1)); done; /bin/true',
               "--json")
    assert done.returncode == 0, done.stderr
    prof = json.loads(done.stdout)  # the program's own output went to stderr
    assert prof["argv"][0] == "/bin/sh" and prof["status"] != 0
    assert prof["calls"]["write"]["count"] >= 200
    assert prof["tiers"]["fast"]["calls"] >= 200
    assert prof["tiers"]["hybrid"]["calls"] >= 1  # the loader's openat
    assert {"syscall": "vfork", "target": "", "errno": "EAGAIN"} in prof["refusals"] \
        or any(r["errno"] == "EAGAIN" for r in prof["refusals"])
    text = "\n".join(prof["suggestions"])
    assert "batch small writes" in text
    assert "[posix_x] fork = true" in text
    assert prof["hotspots"][0]["syscall"] == "write"
    # Only the program was counted: none of the kernel's own Python syscalls.
    assert "futex" not in prof["calls"] or prof["calls"]["futex"]["count"] < 50


def test_profile_table_reads_like_the_seed(exo_cmd: list[str],
                                           exo_env: dict[str, str]) -> None:
    done = _px(exo_cmd, exo_env, "profile", "--", "/bin/cat", "/etc/hostname")
    assert done.returncode == 0, done.stderr
    for words in ("Syscall distribution:", "Fast path", "Hybrid path", "Hotspots",
                  "Suggestions:"):
        assert words in done.stdout


def test_profile_bad_input_is_one_line(exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    done = _px(exo_cmd, exo_env, "profile", "--", "/no/such/program")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    done = _px(exo_cmd, exo_env, "profile", "--timeout", "-1", "--", "/bin/true")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    done = _px(exo_cmd, exo_env, "profile")
    assert done.returncode == 1 and "nothing to profile" in done.stderr


def test_migrate_writes_the_smallest_working_manifest(
        exo_cmd: list[str], exo_env: dict[str, str], exo_root: Path, tmp_path: Path) -> None:
    data = exo_root / "var/lib/demo"
    data.mkdir(parents=True)
    (data / "in.txt").write_text("hello\n")
    script = ("cat /var/lib/demo/in.txt > /var/lib/demo/out.txt && "
              "/bin/cat /etc/debian_version >> /var/lib/demo/out.txt")
    out = tmp_path / "sh.toml"
    done = _px(exo_cmd, exo_env, "migrate", "/bin/sh", "--json", "--output", str(out),
               "--", "-c", script, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    lines = {entry["line"] for entry in result["lines"]}
    assert "[posix_x] fork = true" in lines
    assert "\n# passthrough = true  # " in result["manifest"]  # suggested, not set
    assert 'hold storage://var/lib/demo=READ,WRITE' in lines
    assert '[posix_x] etc = ["/etc/debian_version"]' in lines
    assert any(line.startswith("[posix_x] exec") and "cat" in line for line in lines)
    assert result["status"] == 0
    # Nothing it did not need: no network, no other capability.
    manifest = load_manifest(str(out))
    assert [str(g.name) for g in manifest.grants] == ["storage://var/lib/demo"]
    assert manifest.posix_x is not None and manifest.posix_x.fork is True
    assert manifest.posix_x.passthrough is False
    # The manifest works: run the same command under it.
    (data / "out.txt").unlink()
    ran = subprocess.run([*exo_cmd, "posix-x", "run", "--manifest", str(out), "--",
                          "/bin/sh", "-c", script], env=exo_env, capture_output=True,
                         text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    assert (data / "out.txt").read_text().startswith("hello\n")


def test_migrate_never_adds_a_secret(exo_cmd: list[str], exo_env: dict[str, str],
                                     tmp_path: Path) -> None:
    out = tmp_path / "cat.toml"
    done = _px(exo_cmd, exo_env, "migrate", "/bin/cat", "--json", "-o", str(out), "--",
               "/etc/shadow", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "shadow" not in out.read_text().split("[posix_x]")[1].split("#")[0]
    manifest = load_manifest(str(out))
    assert manifest.posix_x is not None and manifest.posix_x.etc == ()


def test_benchmark_refuses_an_unknown_application(exo_cmd: list[str],
                                                  exo_env: dict[str, str]) -> None:
    done = _px(exo_cmd, exo_env, "benchmark", "--apps", "nginx,doom")
    assert done.returncode == 1
    assert done.stderr == ("posix-x benchmark: unknown application(s) doom (of syscalls, "
                           "nginx, redis, postgres, gcc, python)\n")


def test_benchmark_syscalls_side_by_side(exo_cmd: list[str], exo_env: dict[str, str],
                                         tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    output = tmp_path / "posix_x.json"
    done = _px(exo_cmd, exo_env, "benchmark", "--quick", "--apps", "syscalls", "--json",
               "--output", str(output), timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results == json.loads(output.read_text())
    assert set(results["syscalls"]) == {"getpid", "open", "read_64", "write_64",
                                        "pipe_round_trip", "fork_exit"}
    for row in results["syscalls"].values():
        assert row["native_ns"] > 0 and row["posix_x_ns"] > 0
    assert results["machine"]["cpus"] >= 1


def _shell(kernel: Kernel, session: Session | None = None) -> Shell:
    (kernel.root / "home" / "root").mkdir(parents=True, exist_ok=True)
    vfs = Vfs(kernel.root, kernel.virtual_trees())
    return Shell(kernel.api, vfs, session) if session else Shell(kernel.api, vfs)


def _line(shell: Shell, line: str) -> tuple[int, str, str]:
    with tempfile.TemporaryFile() as i, tempfile.TemporaryFile() as o, \
            tempfile.TemporaryFile() as e:
        status = shell.run_line(line, i.fileno(), o.fileno(), e.fileno())
        o.seek(0)
        e.seek(0)
        return status, o.read().decode(), e.read().decode()


def test_shell_profile_and_the_administrators_tools(kernel: Kernel) -> None:
    root = _shell(kernel)
    status, out, err = _line(root, "posix-x profile -- /bin/cat /etc/hostname --json")
    assert status == 0, err
    assert json.loads(out)["calls"]["openat"]["count"] >= 1
    (kernel.root / "home/root/m.toml").write_text(
        '[sandbox]\ncapabilities = ["storage://home/b=READ"]\n')
    user = UserDatabase(kernel.root).add("alice", "wonderland")
    (kernel.root / "home" / "alice").mkdir(parents=True)
    alice = _shell(kernel, Session(user.name, user.uid, user.home,
                                   session_grants(kernel.root, user)))
    status, _, err = _line(alice, "posix-x migrate /bin/true")
    assert status == 126 and "administrator" in err
    status, _, err = _line(alice, "posix-x benchmark --quick")
    assert status == 126 and "administrator" in err
    # alice may profile, within what her session holds.
    (kernel.root / "home/alice/m.toml").write_text(
        '[sandbox]\ncapabilities = ["storage://home/b=READ"]\n')
    status, _, err = _line(alice, "posix-x profile --manifest /home/alice/m.toml -- "
                                  "/bin/true")
    assert status == 126 and "not held by this session" in err


def test_boot_reports_posix_x_ready(exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    # DEFERRED runs after the prompt: give it time on a loaded machine, then look.
    done = subprocess.run([*exo_cmd, "boot", "-q"],
                          input="sleep 3\ndmesg\nsleep 5\ndmesg\ncat /proc/posix_x\n",
                          env=exo_env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    line = [x for x in done.stdout.splitlines() if "POSIX-X" in x][-1]
    assert "[  OK  ] POSIX-X ready (381 syscalls" in line
    assert "filters compiled" in line
    proc = dict(x.split(": ", 1) for x in done.stdout.splitlines()
                if x.split(": ", 1)[0] in ("syscalls", "fast", "hybrid", "legacy",
                                           "seccomp_user_notification"))
    assert int(proc["fast"]) + int(proc["hybrid"]) + int(proc["legacy"]) == 381
