"""Spawn, wait, kill and clean-up of sandboxed processes; nothing may leak."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from sandbox_testlib import World

from exo.kernel import reaper
from exo.sandbox import (
    ExecFailed,
    SandboxError,
    SandboxSpec,
    SandboxUnavailable,
    cleanup_all,
    default_boot_id,
    probe,
    spawn,
)
from exo.sandbox._cgroups import leftover_groups

PY = sys.executable


def _snapshot() -> tuple[set[int], set[str], set[str]]:
    me = psutil.Process()
    children = {p.pid for p in me.children(recursive=True)}
    fds = {f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}" for fd in os.listdir("/proc/self/fd")
           if os.path.exists(f"/proc/self/fd/{fd}")}
    # mount point, fs type and source of every host mount (ids change with others' activity)
    mounts = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        mounts.add(" ".join((fields[3], fields[4], *fields[sep + 1:sep + 3])))
    return children, fds, mounts


def _ours(mount: str) -> bool:
    """A mount a sandbox of ours could have leaked into the host namespace. The kernels'
    FUSE file servers are not: this test starts none, and other sessions' kernels mount
    theirs under their own /tmp roots while it runs."""
    if " fuse exo-" in mount:
        return False
    return any(k in mount for k in ("newroot", "bwrap", "/usr", "/dev/", "proc", sys.prefix,
                                    "/tmp"))


def test_probe_reports_every_mechanism() -> None:
    info = probe()
    assert set(info) >= {"bwrap", "landlock", "seccomp", "namespaces", "cgroup"}
    assert isinstance(info["landlock"]["abi"], int)
    assert set(info["namespaces"]) >= {"mnt", "pid", "net", "ipc", "user"}


def test_exit_status_and_output() -> None:
    proc = spawn(SandboxSpec(), [PY, "-c", "import sys; print('hi'); sys.exit(3)"],
                 stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.read() == b"hi\n"
    assert proc.wait(30) == 3
    assert proc.returncode == 3
    assert leftover_groups(default_boot_id()) == []


def test_env_cwd_and_pid_namespace(world: World) -> None:
    spec = SandboxSpec(write_paths=(world.own_rw,), cwd=world.own_rw,
                       env={"GREETING": "bonjour"})
    code = ("import os, json; env = open('/proc/self/environ').read().split('\\0')[:-1]; "
            "print(json.dumps([dict(x.split('=', 1) for x in env), os.getcwd(), os.getpid()]))")
    proc = spawn(spec, [PY, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    import json

    env, cwd, pid = json.loads(proc.stdout.read())
    assert proc.wait(30) == 0
    # exactly the spec's environment (Python itself adds LC_CTYPE to os.environ later)
    assert env == {"GREETING": "bonjour", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    assert cwd == str(world.own_rw)
    assert pid == 2  # bubblewrap's reaper is pid 1 of the namespace


def test_keep_fds_at_same_number_and_nothing_else() -> None:
    r, w = os.pipe()
    leak = os.open("/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/passwd",
                   os.O_RDONLY)
    os.set_inheritable(leak, True)
    try:
        code = textwrap.dedent(f"""
            import os
            os.write({w}, b'via bootstrap fd')
            print(sorted(int(x) for x in os.listdir('/proc/self/fd')))
        """)
        proc = spawn(SandboxSpec(keep_fds=(w,)), [PY, "-c", code], stdout=subprocess.PIPE)
        os.close(w)
        assert proc.stdout is not None
        fds = proc.stdout.read().decode()
        assert proc.wait(30) == 0
        assert os.read(r, 100) == b"via bootstrap fd"
        # 0-2 stdio, w, and the fd listdir itself opened
        listed = eval(fds)
        assert w in listed and leak not in listed and len(listed) == 5, listed
    finally:
        os.close(r)
        os.close(leak)


def test_kill_reaches_every_descendant() -> None:
    code = textwrap.dedent("""
        import os, time
        for _ in range(5):
            if os.fork() == 0:
                os.setsid()  # try to get away
                if os.fork() == 0:
                    time.sleep(60)
                time.sleep(60)
        print('ready', flush=True)
        time.sleep(60)
    """)
    proc = spawn(SandboxSpec(pids_max=32), [PY, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        assert proc.cgroup is not None
        deadline = time.monotonic() + 10
        # monitor, init, target, 5 children, 5 grandchildren (these fork asynchronously)
        while len(members := proc.cgroup.members()) < 13 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(members) == 13, members
    finally:
        proc.kill()
    assert proc.returncode is not None
    time.sleep(0.05)
    assert not [p for p in members if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert leftover_groups(default_boot_id()) == []


def test_limits_are_written_to_the_cgroup() -> None:
    spec = SandboxSpec(memory_max=100 << 20, pids_max=10, cpu_max=0.5)
    proc = spawn(spec, [PY, "-c", "import time; time.sleep(30)"])
    try:
        assert proc.cgroup is not None
        files: dict[str, str] = {}
        for d in proc.cgroup.dirs:
            for name in ("memory.limit_in_bytes", "memory.max", "pids.max", "cpu.max",
                         "cpu.cfs_quota_us", "cpu.cfs_period_us"):
                if (d / name).exists():
                    files[name] = (d / name).read_text().strip()
        assert files.get("memory.limit_in_bytes", files.get("memory.max")) == str(100 << 20)
        assert files["pids.max"] == str(10 + 2)
        if "cpu.cfs_quota_us" in files:
            assert (files["cpu.cfs_quota_us"], files["cpu.cfs_period_us"]) == ("50000",
                                                                               "100000")
        else:
            assert files["cpu.max"] == "50000 100000"
        assert proc.pid in proc.cgroup.members()
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGKILL


def test_sandbox_dies_with_the_kernel_and_cleanup_all_reclaims(tmp_path: Path) -> None:
    boot = f"t{os.getpid()}dead"
    kernel = textwrap.dedent(f"""
        import sys, time
        from exo.sandbox import SandboxSpec, spawn
        p = spawn(SandboxSpec(pids_max=8), [{PY!r}, '-c', 'import time; time.sleep(60)'],
                  boot_id={boot!r})
        print(p.pid, flush=True)
        time.sleep(60)
    """)
    k = subprocess.Popen([PY, "-c", kernel], stdout=subprocess.PIPE)
    try:
        assert k.stdout is not None
        app_pid = int(k.stdout.readline())
        assert psutil.pid_exists(app_pid)
        k.kill()
        k.wait()
        deadline = time.monotonic() + 5
        while psutil.pid_exists(app_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not psutil.pid_exists(app_pid)
        assert leftover_groups(boot)  # the dead kernel could not remove its group...
        assert cleanup_all(boot)  # ...the next boot does
        assert leftover_groups(boot) == []
    finally:
        if k.poll() is None:
            k.kill()
            k.wait()
        cleanup_all(boot)


def test_spawn_cycles_leave_nothing_behind() -> None:
    """EXO_SPAWN_CYCLES spawn/exit cycles (default 200): no process, fd, cgroup or mount."""
    cycles = int(os.environ.get("EXO_SPAWN_CYCLES", "200"))
    # An earlier test's kernel reaper may still hold its epoll set (it lingers): gone first.
    assert reaper.settle()
    before = _snapshot()
    spec = SandboxSpec(memory_max=64 << 20, pids_max=8, cpu_max=1.0)
    for i in range(cycles):
        if i % 10 == 9:  # every tenth: killed while running, with pipes
            proc = spawn(spec, ["/bin/sleep", "30"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
            proc.kill()
        else:
            proc = spawn(spec, ["/bin/true"])
            assert proc.wait(30) == 0
    after = _snapshot()
    assert after[0] <= before[0], f"processes left behind: {after[0] - before[0]}"
    assert after[1] == before[1], f"descriptors leaked: {after[1] ^ before[1]}"
    # Other people's tests share the host mount namespace: only our kind of mount counts.
    leaked = {m for m in after[2] - before[2] if _ours(m)}
    assert not leaked, f"mounts left behind: {leaked}"
    assert leftover_groups(default_boot_id()) == []


# ---- bad input: one clear error, no process ----------------------------------------------
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"read_paths": ("relative/path",)}, "not absolute"),
    ({"read_paths": ("/does/not/exist",)}, "does not exist"),
    ({"read_paths": ("/etc",)}, "would expose /etc/shadow"),
    ({"read_paths": ("/",)}, "would expose"),
    ({"read_paths": ("/root",)}, "would expose /root"),
    ({"read_paths": ("/home",)}, "would expose /home"),
    ({"read_paths": ("/proc/1",)}, "lies in /proc"),
    ({"write_paths": ("/usr/lib",)}, "overlaps the read-only system path"),
    ({"memory_max": 10}, "memory_max"),
    ({"pids_max": 0}, "pids_max"),
    ({"cpu_max": float("nan")}, "cpu_max"),
    ({"keep_fds": (1,)}, "keep_fds"),
    ({"keep_fds": (987,)}, "not open"),
    ({"env": {"A=B": "x"}}, "environment variable"),
])
def test_bad_spec_is_a_clear_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        spawn(SandboxSpec(**kwargs), ["/bin/true"])  # type: ignore[arg-type]
    assert leftover_groups(default_boot_id()) == []


def test_ssh_dir_is_never_granted(tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    with pytest.raises(SandboxError, match="key directory"):
        spawn(SandboxSpec(read_paths=(tmp_path / ".ssh",)), ["/bin/true"])


def test_missing_program_is_a_clear_error() -> None:
    with pytest.raises(ExecFailed, match=r"cannot run '/no/such/program'.*No such file") as info:
        spawn(SandboxSpec(), ["/no/such/program"])
    assert info.value.errno == errno.ENOENT
    assert leftover_groups(default_boot_id()) == []


def test_program_outside_exec_grants_is_refused(world: World) -> None:
    target = world.own_rw / "prog"
    target.write_bytes(Path("/usr/bin/true").read_bytes())
    target.chmod(0o755)
    with pytest.raises(SandboxError, match="Permission denied"):
        spawn(SandboxSpec(write_paths=(world.own_rw,)), [str(target)])


def test_bad_argv_and_unknown_mechanism() -> None:
    with pytest.raises(SandboxError, match="argv"):
        spawn(SandboxSpec(), [])
    with pytest.raises(SandboxError, match="unknown mechanisms"):
        spawn(SandboxSpec(), ["/bin/true"], allow_missing=frozenset({"firewall"}))
    with pytest.raises(SandboxError, match="invalid cgroup name"):
        spawn(SandboxSpec(), ["/bin/true"], name="../escape")


def test_missing_mechanism_is_an_error_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulates a host without Landlock by hiding bwrap-independent probe results."""
    from exo.sandbox import _probe as probe_mod

    monkeypatch.setattr(probe_mod, "landlock_abi", lambda: 0)
    with pytest.raises(SandboxUnavailable, match="Landlock"):
        spawn(SandboxSpec(), ["/bin/true"])
    proc = spawn(SandboxSpec(), ["/bin/true"], allow_missing=frozenset({"landlock"}))
    assert proc.wait(30) == 0
