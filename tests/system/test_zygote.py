"""The powerbox's commands fork from the session's zygote (exo.sandbox.zygote): what a
user sees is what the full launcher gave — only the grants, the session's uid with no
capability, seccomp and Landlock, a private /tmp, IPC and network namespaces of its own —
and a command cannot see, signal, ptrace or read the zygote or the session's other
commands, nor name them by pid: each runs in a pid namespace of its own."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.shell._support import run

from exo.kernel.kernel import Kernel
from exo.kernel.users import UserDatabase, session_grants
from exo.sandbox import NetPolicy, SandboxSpec, _bwrap, zygote
from exo.shell import Shell
from exo.shell.session import Session
from exo.shell.vfs import Vfs

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the zygote needs a root kernel"),
]

#: The start of a probe script: ``attempt(name, fn)`` records "ok" or the errno in ``out``.
ATTEMPT = r'''
import ctypes, json, os, resource, signal, sys
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as exc:
        out[name] = exc.errno
'''

PROBE = ATTEMPT + r'''
def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []
sleeper = int(sys.argv[1])  # its pid where the zygote is
out["listed"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
out["me"] = os.getpid()
out["pidns"] = os.readlink("/proc/self/ns/pid")
out["seen"] = [bool(cmdline(sleeper)), bool(cmdline(1))]
for name, pid in (("sibling", sleeper), ("init", 1)):
    attempt(f"kill_{name}", lambda: os.kill(pid, signal.SIGKILL))
    attempt(f"environ_{name}", lambda: open(f"/proc/{pid}/environ", "rb").read())
    attempt(f"fd_{name}", lambda: open(f"/proc/{pid}/fd/0", "rb"))
    attempt(f"root_{name}", lambda: os.listdir(f"/proc/{pid}/root/"))
libc = ctypes.CDLL(None, use_errno=True)
def ptrace():
    if libc.ptrace(16, sleeper, 0, 0) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "ptrace")
attempt("ptrace_sibling", ptrace)
def unshare():
    if libc.unshare(0x20000) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
attempt("unshare", unshare)
attempt("write_root", lambda: open("/planted", "w"))
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\t" in line)
out["uid"] = os.getuid()
out["caps"] = [status["CapEff"].strip(), status["CapPrm"].strip(), status["CapBnd"].strip()]
out["seccomp"] = status["Seccomp"].strip()
out["nnp"] = status["NoNewPrivs"].strip()
out["mounts"] = open("/proc/self/mountinfo").read()
out["cgroup"] = open("/proc/self/cgroup").read().splitlines()
print(json.dumps(out))
'''


@pytest.fixture
def alice(kernel: Kernel) -> Iterator[Shell]:
    user = UserDatabase(kernel.root).add("alice", "wonderland")
    (kernel.root / "home" / "alice").mkdir(parents=True)
    session = Session(user.name, user.uid, user.home, session_grants(kernel.root, user))
    shell = Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()), session)
    yield shell


def _nspid(host_pid: int, outer: int = 0) -> int:
    """A process's pid in its innermost pid namespace (``outer``: that many levels up)."""
    for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1 - outer])
    raise AssertionError(f"no NSpid for {host_pid}")


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _zygote_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "_zygote_main.py"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_powerbox_commands_run_in_the_sessions_zygote(alice: Shell, kernel: Kernel) -> None:
    home = kernel.root / "home" / "alice"
    (home / "notes.txt").write_text("b\na\nb\n")
    before = zygote.running()
    status, out, err = run(alice, "/bin/cat notes.txt | /usr/bin/sort | /usr/bin/uniq -c")
    assert status == 0, err
    assert out.split() == ["1", "a", "2", "b"]
    assert zygote.running() == before + 1  # one for the session, however many commands
    status, out, err = run(alice, "sort -o sorted.txt notes.txt")
    assert status == 0, err
    assert (home / "sorted.txt").read_text() == "a\nb\nb\n"
    assert zygote.running() == before + 1
    # Exit statuses and the session's uid come through as from the full launcher.
    assert run(alice, "sh -c 'exit 3'")[0] == 3
    assert run(alice, "id -un")[1] == "alice\n"
    assert [r["pid"] for r in alice.kernel.ps()] == [1]  # every command reaped


HOLD = r'''
import ctypes, os, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 47321))
queue = libc.msgget(47321, 0o1666)  # IPC_CREAT, world-writable
mq = libc.mq_open(b"/exo-meet", os.O_CREAT | os.O_RDWR, 0o666, None)
mq = mq if mq >= 0 else -ctypes.get_errno()
print(os.readlink("/proc/self/ns/ipc"), os.readlink("/proc/self/ns/net"), queue, mq,
      flush=True)
time.sleep(30)
'''

MEET = r'''
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
out = {"ns": [os.readlink("/proc/self/ns/ipc"), os.readlink("/proc/self/ns/net")]}
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.settimeout(5)
udp.connect(("127.0.0.1", 47321))
udp.send(b"hello")
try:
    udp.recv(16)
    out["udp"] = "answered"
except OSError as exc:  # ICMP port unreachable on this loopback: no one listens here
    out["udp"] = exc.errno
out["msgget"] = libc.msgget(47321, 0) if libc.msgget(47321, 0) >= 0 else ctypes.get_errno()
fd = libc.mq_open(b"/exo-meet", os.O_RDWR)
out["mq_open"] = ctypes.get_errno() if fd < 0 else "opened"
me = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # this command's own loopback is up
me.bind(("127.0.0.1", 0))
me.sendto(b"self", me.getsockname())
out["self"] = me.recv(16).decode()
print(json.dumps(out))
'''


@pytest.mark.parametrize("how", ["powerbox", "run"])
def test_two_commands_of_a_session_cannot_meet_outside_their_grants(
        how: str, alice: Shell, kernel: Kernel) -> None:
    """Each command forked from the zygote gets IPC and network namespaces of its own
    (its loopback up): one that listens on a UDP port of 127.0.0.1 and holds a System V
    message queue and a POSIX message queue is found by none of them from a command
    started next — through the powerbox and as `run` apps alike."""
    home = kernel.root / "home" / "alice"
    (home / "hold.py").write_text(HOLD)
    (home / "meet.py").write_text(MEET)
    prefix = "run --cap storage://home/alice=READ,WRITE -- /usr/bin/python3" \
        if how == "run" else "python3"
    before = zygote.running()
    assert run(alice, f"{prefix} hold.py > held.txt &")[0] == 0
    try:
        deadline = time.monotonic() + 10
        while not (home / "held.txt").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        ipc, net, queue, mq = (home / "held.txt").read_text().split()
        assert int(queue) >= 0  # made in the holder's IPC namespace
        assert int(mq) >= 0 or int(mq) == -13  # (Landlock refuses creating it: EACCES)
        status, out, err = run(alice, f"{prefix} meet.py")
        assert status == 0, err
        seen = json.loads(out)
        assert seen["udp"] == 111, seen  # ECONNREFUSED: nothing on this loopback's port
        assert seen["msgget"] == 2 and seen["mq_open"] == 2, seen  # ENOENT
        assert seen["self"] == "self"
        # Both alive, so their namespaces' numbers cannot have been reused: distinct.
        assert seen["ns"][0] != ipc and seen["ns"][1] != net
        assert zygote.running() == before + 1  # both started by the session's zygote
    finally:
        run(alice, "kill %1")
        run(alice, "wait")
    assert [r["pid"] for r in alice.kernel.ps()] == [1]


REACH = ATTEMPT + r'''
libc = ctypes.CDLL(None, use_errno=True)
def ioprio(pid):  # ioprio_set(IOPRIO_WHO_PROCESS, pid, the idle class)
    if libc.syscall(251, 1, pid, 3 << 13) != 0:
        raise OSError(ctypes.get_errno(), "ioprio_set")
for pid in map(int, sys.argv[1:]):  # the sibling's pids, in every namespace it has one
    attempt(f"prlimit {pid}", lambda: resource.prlimit(pid, resource.RLIMIT_CPU, (0, 0)))
    attempt(f"setpriority {pid}", lambda: os.setpriority(os.PRIO_PROCESS, pid, 19))
    attempt(f"setaffinity {pid}", lambda: os.sched_setaffinity(pid, {0}))
    attempt(f"setscheduler {pid}",
            lambda: os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0)))
    attempt(f"ioprio {pid}", lambda: ioprio(pid))
out["last_pid"] = int(open("/proc/loadavg").read().split("/")[-1].split()[-1])
out["pidns"] = os.readlink("/proc/self/ns/pid")
print(json.dumps(out))
'''


@pytest.mark.parametrize("how", ["powerbox", "run"])
def test_a_command_cannot_reach_a_sibling_by_its_pid(how: str, alice: Shell,
                                                     kernel: Kernel) -> None:
    """Landlock and hidepid do not cover the calls that name a process by pid for its
    limits and scheduling (prlimit64, setpriority, sched_setaffinity, sched_setscheduler,
    ioprio_set), and a sibling runs as the same uid: a command in a pid namespace of its
    own cannot name the sibling at all (ESRCH, every number it has), so a sibling's CPU
    limit is never set to 0 (a kill) nor used as a channel; the command sees only its own
    namespace's pid counter."""
    home = kernel.root / "home" / "alice"
    (home / "reach.py").write_text(REACH)
    prefix = "run --cap storage://home/alice=READ,WRITE -- " if how == "run" else ""
    before = zygote.running()
    assert run(alice, f"{prefix}/bin/sleep 30 &")[0] == 0
    try:
        deadline = time.monotonic() + 10
        while not (rows := [r for r in alice.kernel.ps() if r["pid"] != 1]):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        [row] = rows
        host = row["host_pid"]
        # Its pid in every namespace it has one, but 1 and 2: in a namespace of its own
        # those name the command's own init and the command itself.
        numbers = [int(n) for line in Path(f"/proc/{host}/status").read_text().splitlines()
                   if line.startswith("NSpid:") for n in line.split()[1:] if int(n) > 2]
        status, out, err = run(alice, f"{prefix}/usr/bin/python3 reach.py "
                                      + " ".join(map(str, numbers)))
        assert status == 0, err
        seen = json.loads(out)
        for pid in numbers:
            for call in ("prlimit", "setpriority", "setaffinity", "setscheduler", "ioprio"):
                assert seen[f"{call} {pid}"] == 3, (call, pid, seen)  # ESRCH
        assert seen["pidns"] != os.readlink(f"/proc/{host}/ns/pid")
        assert seen["last_pid"] < 10, seen  # its own namespace's counter
        limits = Path(f"/proc/{host}/limits").read_text()
        assert next(ln for ln in limits.splitlines() if ln.startswith("Max cpu time")) \
            .split()[3] == "unlimited"
        fields = Path(f"/proc/{host}/stat").read_text().rsplit(")", 1)[1].split()
        assert (fields[0], fields[16]) in (("S", "0"), ("R", "0"))  # state, nice
        assert zygote.running() == before + 1  # both forked from the session's zygote
    finally:
        run(alice, "kill %1")
        run(alice, "wait")
    assert [r["pid"] for r in alice.kernel.ps()] == [1]


def test_powerbox_files_open_in_passthrough_mode(alice: Shell, kernel: Kernel) -> None:
    """A powerbox command reads its files through FUSE passthrough (not request by
    request through the kernel's file server), and gets the same bytes."""
    home = kernel.root / "home" / "alice"
    (home / "big.txt").write_bytes(b"line\n" * 50_000)
    assert run(alice, "/bin/true")[0] == 0  # the file server starts with the first grant
    dirs = kernel.files.stats()["dirs"]
    assert dirs is not None
    if not dirs["passthrough"]:
        pytest.skip("no FUSE passthrough on this kernel")
    before = dirs["passthrough_opened"]
    status, out, err = run(alice, "/bin/cat big.txt | /usr/bin/wc -l")
    assert status == 0, err
    assert out.strip() == "50000"
    assert kernel.files.stats()["dirs"]["passthrough_opened"] > before


def test_a_command_holds_only_its_grants(alice: Shell, kernel: Kernel) -> None:
    (kernel.root / "home" / "b" / "secret").write_text("s3cret\n")
    (kernel.root / "home" / "alice" / "mine.txt").write_text("mine\n")
    status, out, _ = run(alice, "cat /home/b/secret")
    assert status != 0 and "s3cret" not in out
    # A private /tmp per command, not the zygote's or another command's.
    assert run(alice, "sh -c 'echo x > /tmp/left'")[0] == 0
    assert run(alice, "ls /tmp")[1] == ""
    status, out, _ = run(alice, "ls /")
    assert status != 0 or "b" not in out.split()  # / cannot be listed (Landlock)


def test_a_command_cannot_touch_the_zygote_or_its_siblings(alice: Shell,
                                                           kernel: Kernel) -> None:
    (kernel.root / "home" / "alice" / "probe.py").write_text(PROBE)
    assert run(alice, "/bin/sleep 30 &")[0] == 0
    try:
        [row] = [r for r in alice.kernel.ps() if r["pid"] != 1]
        sleeper = _nspid(row["host_pid"], outer=1)  # as the zygote numbers it
        zyg = _ppid(_ppid(row["host_pid"]))  # the zygote, its init's parent
        assert zyg in _zygote_pids()
        status, out, err = run(alice, f"python3 probe.py {sleeper}")
        assert status == 0, err
        seen = json.loads(out)
        # A pid namespace of its own, in which it is pid 2 (its init, 1, reaps for it);
        # its own /proc (hidepid=invisible) shows no process it cannot ptrace: only
        # itself, not its init (root).
        assert seen["me"] == 2 and seen["listed"] == [2], seen
        assert seen["pidns"] not in (os.readlink(f"/proc/{zyg}/ns/pid"),
                                     os.readlink(f"/proc/{row['host_pid']}/ns/pid"))
        assert seen["seen"] == [False, False]
        assert seen["kill_sibling"] == 3, seen  # ESRCH: no such process in its namespace
        assert seen["kill_init"] == 1, seen  # EPERM: root's
        for target in ("sibling", "init"):
            assert seen[f"environ_{target}"] == 2, (target, seen)  # ENOENT
            assert seen[f"fd_{target}"] == 2, (target, seen)
            assert seen[f"root_{target}"] == 2, (target, seen)
        assert seen["ptrace_sibling"] == 1
        assert seen["unshare"] == 1  # seccomp
        assert seen["write_root"] == 30  # EROFS
        assert seen["uid"] >= 300000
        assert seen["caps"] == ["0000000000000000"] * 3
        assert seen["seccomp"] == "2" and seen["nnp"] == "1"
        assert str(kernel.root) not in seen["mounts"]  # no host path of the tree
        # A cgroup namespace rooted at its own group: no name of the kernel's groups.
        assert seen["cgroup"] and all(ln.endswith(":/") for ln in seen["cgroup"]), seen
        # The sleeper is still there, untouched.
        assert any(j for j in run(alice, "jobs")[1].splitlines() if "sleep" in j)
    finally:
        run(alice, "kill %1")
        run(alice, "wait")


def test_a_kill_reaches_the_command(alice: Shell, kernel: Kernel) -> None:
    assert run(alice, "/bin/sleep 30 &")[0] == 0
    [row] = [r for r in alice.kernel.ps() if r["pid"] != 1]
    assert row["state"] == "running"
    # In its own cgroup (memory, pids), which the kernel put it in before exec: one
    # made for the zygote's commands, holding it alone.
    groups = Path(f"/proc/{row['host_pid']}/cgroup").read_text().splitlines()
    mine = {g.split(":")[1]: g.split(":")[2] for g in groups
            if g.split(":")[1] in ("memory", "pids")}
    assert len(mine) == 2 and len({p.rsplit("/", 1)[1] for p in mine.values()}) == 1, groups
    assert all(p.rsplit("/", 1)[1].startswith("zygote.") for p in mine.values()), groups
    for controller, path in mine.items():
        procs = Path(f"/sys/fs/cgroup/{controller}{path}/cgroup.procs").read_text().split()
        assert procs == [str(row["host_pid"])], (controller, procs)
    assert run(alice, "kill %1")[0] == 0
    status, _, _ = run(alice, "wait")
    assert [r["pid"] for r in alice.kernel.ps()] == [1]
    del status


def test_spares_wait_in_a_group_of_the_last_commands_limits(alice: Shell,
                                                            kernel: Kernel) -> None:
    """A spare's command-to-be is put in a group ahead, of the limits the session's last
    command had (Zygote._pre_enter): a command then starts in a group of its own whose
    limits are the command's, and a spare taken for other limits leaves its group."""
    for _ in range(3):  # learned, and the spares made since are in such groups
        assert run(alice, "/bin/true")[0] == 0
    time.sleep(0.5)
    [z] = [z for z in zygote._zygotes.values() if not z.dead]
    with z.lock:
        ahead = [s.cgroup for s in z.spares]
    assert ahead and all(g is not None for g in ahead)
    assert run(alice, "/bin/sleep 30 &")[0] == 0
    [row] = [r for r in alice.kernel.ps() if r["pid"] != 1]
    proc = kernel.processes.get(row["pid"])
    groups = Path(f"/proc/{row['host_pid']}/cgroup").read_text().splitlines()
    memory = next(g.split(":")[2] for g in groups if g.split(":")[1] == "memory")
    limit = int(Path(f"/sys/fs/cgroup/memory{memory}/memory.limit_in_bytes").read_text())
    assert proc.limits.memory is not None and limit == proc.limits.memory
    procs = Path(f"/sys/fs/cgroup/memory{memory}/cgroup.procs").read_text().split()
    assert procs == [str(row["host_pid"])]
    assert run(alice, "kill %1")[0] == 0
    run(alice, "wait")


def test_what_a_command_leaves_behind_goes_with_its_reclaim(alice: Shell,
                                                           kernel: Kernel) -> None:
    """The exit status comes before the reclaim (ProcessManager._reap): a command that
    leaves a process behind (setsid, in the background, holding the command's grant
    through its working directory) returns at once, and the reclaim then kills that
    process with the cgroup (whose one-rmdir removal refuses a group still in use)."""
    marker = "31337"
    status, _, err = run(alice, f"/bin/sh -c 'setsid /bin/sleep {marker} >/dev/null 2>&1 "
                                "</dev/null & exit 0'")
    assert status == 0, err

    def left() -> list[int]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"/bin/sleep", marker.encode()]:
                found.append(int(pid))
        return found

    procs = kernel.processes
    deadline = time.monotonic() + 30
    while (left() or procs._reclaiming) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left() == [], "the process the command left behind outlived its reclaim"
    assert not procs._reclaiming


def test_shutdown_stops_the_zygote(tmp_path: Path) -> None:
    from exo.kernel.config import KernelConfig

    k = Kernel(KernelConfig(root=tmp_path / "root"), ephemeral=True)
    k.boot()
    try:
        user = UserDatabase(k.root).add("carol", "pw-carol-1")
        (k.root / "home" / "carol").mkdir(parents=True)
        session = Session(user.name, user.uid, user.home, session_grants(k.root, user))
        shell = Shell(k.api, Vfs(k.root, k.virtual_trees()), session)
        before = set(_zygote_pids())
        assert run(shell, "/bin/true")[0] == 0
        mine = set(_zygote_pids()) - before  # bubblewrap, its init, the zygote
        assert mine
    finally:
        k.shutdown()
    assert not mine & set(_zygote_pids())


def test_a_command_on_a_terminal_gets_its_dev_tty(alice: Shell, kernel: Kernel) -> None:
    """On a terminal the command's /dev is its own: /dev/tty is that terminal's node, and a
    command of the same session without a terminal still has none."""
    from exo.kernel.sessions import host_uid

    master, slave = os.openpty()
    uid = host_uid(alice.session.uid)
    os.chown(os.ttyname(slave), uid, uid)  # as the login gives it to the user
    os.chmod(os.ttyname(slave), 0o660)
    try:
        status = alice.run_line("sh -c 'echo hi > /dev/tty; /bin/ls /dev'", 0, slave, slave)
        os.set_blocking(master, False)
        out = os.read(master, 4096).decode()
        assert status == 0, out
        assert "hi" in out and "tty" in out.split() and "null" in out.split()
        assert zygote.running() >= 1
    finally:
        os.close(slave)
        os.close(master)
    status, out, _ = run(alice, "/bin/ls /dev")
    assert status == 0 and "tty" not in out.split() and "null" in out.split()


def test_a_dead_zygote_ends_its_commands_and_the_next_command_gets_a_new_one(
        alice: Shell, kernel: Kernel) -> None:
    """Killing the zygote (bubblewrap's monitor and all) ends the commands it forked (its
    pid namespace goes with it): they are reported killed and reaped, nothing hangs, and
    the session's next command starts a fresh zygote."""
    import signal
    import time

    before = set(_zygote_pids())
    assert run(alice, "/bin/sleep 30 &")[0] == 0
    [row] = [r for r in alice.kernel.ps() if r["pid"] != 1]
    for pid in set(_zygote_pids()) - before:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while [r for r in alice.kernel.ps() if r["pid"] == row["pid"]] and \
            time.monotonic() < deadline:
        run(alice, "jobs")  # the shell notices its job ended
        time.sleep(0.05)
    assert not [r for r in alice.kernel.ps() if r["pid"] == row["pid"]]
    run(alice, "wait")
    status, out, err = run(alice, "/bin/echo again")
    assert (status, out) == (0, "again\n"), err
    assert set(_zygote_pids()) - before  # a new one


def test_a_login_starts_the_sessions_zygote_before_its_first_command(
        kernel: Kernel) -> None:
    import time

    UserDatabase(kernel.root).add("dave", "pw-dave-12")
    (kernel.root / "home" / "dave").mkdir(parents=True)
    before = zygote.running()
    session = kernel.api.login("dave", "pw-dave-12")
    assert session is not None
    deadline = time.monotonic() + 10
    while zygote.running() == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert zygote.running() == before + 1
    with zygote.prefer():  # the first command uses that one
        null = os.open(os.devnull, os.O_RDWR)
        try:
            assert kernel.api.run(["/bin/true"], [], stdio=(null, null, null),
                                  session=session.token) == 0
        finally:
            os.close(null)
    assert zygote.running() == before + 1


def test_a_runtime_under_tmp_stays_visible_over_a_commands_private_tmp(
        alice: Shell, kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout under /tmp (a fresh clone): the zygote runs its commands all the same,
    with the runtime's paths kept read-only at their places over the private /tmp."""
    runtime = Path(tempfile.mkdtemp(prefix="exo-runtime-", dir="/tmp"))
    try:
        runtime.chmod(0o755)
        (runtime / "marker").write_text("runtime\n")
        paths = _bwrap.runtime_paths()
        monkeypatch.setattr(_bwrap, "runtime_paths", lambda: (*paths, runtime))
        assert zygote.eligible(SandboxSpec(net=NetPolicy.none(), account=("a", 301000))) \
            is None
        before = zygote.running()
        status, out, err = run(alice, f"sh -c 'cat {runtime}/marker'")
        assert (status, out) == (0, "runtime\n"), err
        assert zygote.running() == before + 1  # the zygote ran it, not the full launcher
        status, _, _ = run(alice, f"sh -c 'echo x > {runtime}/planted'")
        assert status != 0 and not (runtime / "planted").exists()  # read-only
        assert run(alice, "sh -c 'echo x > /tmp/left && cat /tmp/left'")[1] == "x\n"
        # nothing left over from the other command: private, the runtime's paths kept
        listed = run(alice, "sh -c 'ls /tmp'")[1].split()
        assert runtime.name in listed and "left" not in listed
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def test_a_pipelines_programs_are_confirmed_after_the_last_start(
        alice: Shell, kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each program of a pipeline starts without waiting for its exec (the kernel then
    prepares the next one meanwhile); every exec is still confirmed, once, after the last
    start, and the status pipes go with the confirmations."""
    (kernel.root / "home" / "alice" / "words").write_text("b\na\nb\n")
    confirmed: list[bool] = []  # each confirmation: was it a deferred one
    real, real_deferred = zygote._confirm, zygote._confirm_deferred
    deferred = [False]

    def confirm(proc: object, status_r: int, timeout: float) -> None:
        confirmed.append(deferred[0])
        real(proc, status_r, timeout)  # type: ignore[arg-type]

    def confirm_deferred(proc: object, status_r: int, timeout: float) -> None:
        deferred[0] = True
        try:
            real_deferred(proc, status_r, timeout)  # type: ignore[arg-type]
        finally:
            deferred[0] = False

    monkeypatch.setattr(zygote, "_confirm", confirm)
    monkeypatch.setattr(zygote, "_confirm_deferred", confirm_deferred)
    assert run(alice, "/bin/true")[0] == 0  # the zygote is up; a lone command waits
    assert confirmed == [False]
    fds = set(os.listdir("/proc/self/fd"))
    status, out, err = run(alice, "/bin/cat words | /usr/bin/sort | /usr/bin/uniq -c")
    assert (status, out.split(), err) == (0, ["1", "a", "2", "b"], "")
    assert confirmed == [False, True, True, True]  # deferred, each once
    deadline = time.monotonic() + 10
    while [r["pid"] for r in alice.kernel.ps()] not in ([], [1]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    left = {}
    for fd in set(os.listdir("/proc/self/fd")) - fds:
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile by another thread
            left[fd] = os.readlink(f"/proc/self/fd/{fd}")
    assert not [t for t in left.values() if t.startswith("pipe:")], left  # no status pipe


def test_a_program_whose_exec_fails_after_a_deferred_start_is_reported(
        alice: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a deferred start's confirmation raises is said as a start that failed at once
    says it, and its stage takes the status such a start gives (the rest of the pipeline
    runs, as in sh)."""
    from exo.sandbox.errors import ExecFailed

    real = zygote._confirm_deferred
    calls: list[int] = []

    def confirm(proc: object, status_r: int, timeout: float) -> None:
        real(proc, status_r, timeout)  # type: ignore[arg-type]
        calls.append(1)
        if len(calls) == 1:
            raise ExecFailed("cannot run '/bin/echo': Exec format error", 8)

    monkeypatch.setattr(zygote, "_confirm_deferred", confirm)
    status, out, err = run(alice, "/bin/echo hi | /usr/bin/wc -c")
    assert err == "exo: /bin/echo: cannot run '/bin/echo': Exec format error\n"
    assert status == 0 and out.strip() == "3"  # the last stage's status, as in sh

def test_a_pipeline_stage_the_zygote_cannot_start_is_reported_and_nothing_is_left(
        alice: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage whose spare refuses its request (here: records it finds malformed; the
    spare says why on the status pipe and ends) is reported with that reason, the other
    stages run, the zygote stays up, and nothing of the stage stays in the kernel's
    process table or the zygote's running commands."""
    real_records = zygote._records
    corrupted: list[int] = []

    def records(*args: object, **kwargs: object) -> bytes:
        raw = real_records(*args, **kwargs)  # type: ignore[arg-type]
        if corrupted:
            return raw
        corrupted.append(1)
        return raw.replace(b"cwd\0", b"cwd-\0", 1)  # a record no spare knows

    assert run(alice, "/bin/true")[0] == 0  # the zygote is up
    up = zygote.running()
    monkeypatch.setattr(zygote, "_records", records)
    status, out, err = run(alice, "/bin/echo hi | /usr/bin/wc -c")
    assert corrupted and zygote.running() == up  # the same zygote, still up
    assert err == "exo: /bin/echo: sandbox start failed: zygote request: cwd expected\n"
    assert status == 0 and out.strip() == "0"  # wc ran, on an empty pipe
    deadline = time.monotonic() + 10
    while [r["pid"] for r in alice.kernel.ps()] != [1]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert all(not z.pending for z in zygote._zygotes.values())

