"""Escape attempts by a sandboxed process; each must be refused by the Linux kernel.

Every case names the mechanism that refuses it first and the errno (or observable outcome)
that proves it. The cases run as Python snippets inside a few real sandboxes (one spawn per
configuration, not per case, to keep the suite fast); see conftest.RUNNER.

Mechanisms: landlock, seccomp, mount-ns, pid-ns, net-ns, cgroup, no_new_privs,
capabilities (bubblewrap drops them all), fd-close (only stdio and keep_fds survive).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from sandbox_testlib import World, run_cases

from exo.sandbox import NetPolicy, SandboxSpec, spawn
from exo.sandbox.launcher import SECCOMP_MARKER_ERRNO

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64",
                                reason="raw syscall numbers below are x86_64")


@dataclass(frozen=True)
class Case:
    name: str
    code: str
    mechanism: str
    errno: str | None = None  # expected errno name; None: check `value`
    value: object = None  # expected `result` when the operation itself is not an error


def c(name: str, mechanism: str, code: str, errno: str | None = None,
      value: object = None) -> Case:
    return Case(name, textwrap.dedent(code).strip(), mechanism, errno, value)


# ---- the main battery: no network, one rw and one ro grant -------------------------------
ESCAPES: list[Case] = [
    # filesystem: secrets and other apps are simply not in the mount namespace
    c("read /etc/shadow", "mount-ns", "open('/etc/shadow').read()", "ENOENT"),
    c("read root ssh key", "mount-ns", "open('/root/.ssh/id_ed25519').read()", "ENOENT"),
    c("list other users' homes", "mount-ns", "os.listdir('/home')", "ENOENT"),
    c("read another app's file", "mount-ns", "open(ctx['other'] + '/secret.txt').read()",
      "ENOENT"),
    c("host-planted symlink out of grant", "mount-ns",
      "open(ctx['own_rw'] + '/planted-link').read()", "ENOENT"),
    c("own symlink to another app's file", "mount-ns", """
        p = ctx['own_rw'] + '/l-other'
        os.symlink(ctx['other'] + '/secret.txt', p)
        open(p).read()""", "ENOENT"),
    c("own symlink to /etc/shadow", "mount-ns", """
        p = ctx['own_rw'] + '/l-shadow'
        os.symlink('/etc/shadow', p)
        open(p).read()""", "ENOENT"),
    c("hard link a read-only file into the rw grant", "mount-ns",
      "os.link(ctx['own_ro'] + '/data.txt', ctx['own_rw'] + '/hl')", "EXDEV"),
    c("rename rw file out of the grant", "mount-ns", """
        open(ctx['own_rw'] + '/mv.txt', 'w').close()
        os.rename(ctx['own_rw'] + '/mv.txt', '/tmp/mv.txt')""", "EXDEV"),
    c("write into a read-only grant", "mount-ns",
      "open(ctx['own_ro'] + '/data.txt', 'a').write('x')", "EROFS"),
    c("create file at sandbox root", "mount-ns", "open('/evil', 'w')", "EROFS"),
    c("modify the Exo source tree", "mount-ns",
      "open(os.path.dirname(os.path.dirname(__import__('exo').__file__)) + '/evil.py', 'w')",
      "EROFS"),
    c("modify the host python", "mount-ns", "open(os.__file__, 'a')", "EROFS"),
    c("open a raw disk", "mount-ns", "open('/dev/vda', 'rb')", "ENOENT"),
    c("open /dev/mem", "mount-ns", "open('/dev/mem', 'rb')", "ENOENT"),
    c("reach the cgroup filesystem", "mount-ns", "os.listdir('/sys/fs/cgroup')", "ENOENT"),
    c("setuid binary does not change euid", "mount-ns", """
        import subprocess
        result = subprocess.run([ctx['exec_dir'] + '/suid-id', '-u'], capture_output=True,
                                text=True, check=True).stdout.strip()""", value="0"),
    # filesystem: visible but not granted -> Landlock
    c("list /root", "landlock", "os.listdir('/root')", "EACCES"),
    c("execute a file written into the rw grant", "landlock", """
        import shutil, subprocess
        p = ctx['own_rw'] + '/mytrue'
        shutil.copy('/usr/bin/true', p); os.chmod(p, 0o755)
        subprocess.run([p])""", "EACCES"),
    c("create a device node", "landlock",
      "os.mknod(ctx['own_rw'] + '/mem', 0o20600, os.makedev(1, 1))", "EACCES"),
    c("write a sysctl", "landlock",
      "open('/proc/sys/kernel/hostname', 'w').write('evil')", "EACCES"),
    c("rename own process via /proc", "landlock",
      "open('/proc/self/comm', 'w').write('x')", "EACCES"),
    c("read /proc/1/mem (ns init)", "landlock", "open('/proc/1/mem', 'rb')", "EACCES"),
    c("/proc/1/root trick", "landlock", "os.listdir('/proc/1/root/')", "EACCES"),
    c("/proc/1/ns trick", "landlock", "os.open('/proc/1/ns/mnt', os.O_RDONLY)", "EACCES"),
    c("signal the namespace init (bwrap)", "landlock", "import signal; os.kill(1, signal.SIGTERM)",
      "EPERM"),
    # the kernel process and other processes are not in the pid namespace
    c("kill the kernel (parent) by host pid", "pid-ns",
      "import signal; os.kill(ctx['kernel_pid'], signal.SIGKILL)", "ESRCH"),
    c("/proc/<kernel pid>/root trick", "pid-ns",
      "os.listdir('/proc/%d/root/' % ctx['kernel_pid'])", "ENOENT"),
    c("/proc/<kernel pid>/ns trick", "pid-ns",
      "os.open('/proc/%d/ns/net' % ctx['kernel_pid'], os.O_RDONLY)", "ENOENT"),
    # network: no capability -> Landlock refuses TCP, the namespace has no route out
    c("TCP connect to the kernel's port", "landlock", """
        import socket
        socket.create_connection(('127.0.0.1', ctx['tcp_port']), timeout=2)""", "EACCES"),
    c("TCP bind a port", "landlock", """
        import socket
        socket.socket().bind(('0.0.0.0', 8080))""", "EACCES"),
    c("UDP to the outside", "net-ns", """
        import socket
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(('8.8.8.8', 53))""",
      "ENETUNREACH"),
    c("abstract unix socket of the kernel", "net-ns", """
        import socket
        socket.socket(socket.AF_UNIX).connect('\\0' + ctx['abstract'])""", "ECONNREFUSED"),
    c("raw socket", "seccomp",
      "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)",
      "EPERM"),
    c("packet socket", "seccomp", "import socket; socket.socket(17, socket.SOCK_DGRAM, 0)",
      "EPERM"),
    # kernel interfaces removed by seccomp
    c("mount tmpfs", "seccomp", "sc(165, b'none', b'/tmp', b'tmpfs', 0, None)", "EPERM"),
    c("umount /usr", "seccomp", "sc(166, b'/usr', 2)", "EPERM"),
    c("pivot_root", "seccomp", "sc(155, b'/tmp', b'/tmp')", "EPERM"),
    c("chroot", "seccomp", "os.chroot('/tmp')", "EPERM"),
    c("unshare user namespace", "seccomp", "sc(272, 0x10000000)", "EPERM"),
    c("unshare mount namespace", "seccomp", "sc(272, 0x00020000)", "EPERM"),
    c("clone into new user namespace", "seccomp", """
        r = sc(56, 0x10000000 | 17, 0, 0, 0, 0)
        if r == 0: os._exit(0)
        os.waitpid(r, 0)""", "EPERM"),
    c("clone into new net namespace", "seccomp", """
        r = sc(56, 0x40000000 | 17, 0, 0, 0, 0)
        if r == 0: os._exit(0)
        os.waitpid(r, 0)""", "EPERM"),
    c("clone3 (flags unreadable by seccomp)", "seccomp", "sc(435, 0, 0)", "ENOSYS"),
    c("setns into a namespace", "seccomp",
      "sc(308, os.open('/proc/self/ns/net', os.O_RDONLY), 0)", "EPERM"),
    c("ptrace attach to init", "seccomp", "sc(101, 16, 1, 0, 0)", "EPERM"),
    c("process_vm_readv", "seccomp", "sc(310, 1, 0, 0, 0, 0, 0)", "EPERM"),
    c("open_by_handle_at", "seccomp", "sc(304, -100, 0, 0)", "EPERM"),
    c("kexec_load", "seccomp", "sc(246, 0, 0, 0, 0)", "EPERM"),
    c("init_module", "seccomp", "sc(175, 0, 0, b'')", "EPERM"),
    c("finit_module", "seccomp", "sc(313, 0, b'', 0)", "EPERM"),
    c("bpf prog load", "seccomp", "sc(321, 5, 0, 0)", "EPERM"),
    c("keyctl", "seccomp", "sc(250, 0, -3, 0)", "EPERM"),
    c("perf_event_open", "seccomp", "sc(298, 0, 0, -1, -1, 0)", "EPERM"),
    c("userfaultfd", "seccomp", "sc(323, 0)", "EPERM"),
    c("io_uring_setup", "seccomp", "sc(425, 1, 0)", "EPERM"),
    c("reboot", "seccomp", "sc(169, 0xfee1dead, 672274793, 0)", "EPERM"),
    c("iopl", "seccomp", "sc(172, 3)", "EPERM"),
    c("disable ASLR via personality", "seccomp", "sc(135, 0x0040000)", "EPERM"),
    c("TIOCSTI terminal injection", "seccomp",
      "import fcntl; fcntl.ioctl(0, 0x5412, b'x')", "EPERM"),
    c("set the clock", "seccomp", "sc(227, 0, 0)", "EPERM"),
    c("read the kernel log", "seccomp", "sc(103, 3, 0, 0)", "EPERM"),
    # privileges
    c("regain root capabilities through exec", "no_new_privs", """
        import subprocess
        out = subprocess.run(['/bin/sh', '-c', 'grep CapEff /proc/self/status'],
                             capture_output=True, text=True).stdout
        result = out.split()[1]""", value="0000000000000000"),
    c("clear no_new_privs", "no_new_privs", """
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(38, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), 'prctl')""", "EINVAL"),
    c("give a file to another user", "capabilities", """
        p = ctx['own_rw'] + '/chown.txt'
        open(p, 'w').close()
        os.chown(p, 1000, 1000)""", "EPERM"),
    c("join another user's groups", "capabilities", "os.setgroups([27])", "EPERM"),
    # descriptors
    c("use the kernel's inherited secret fd", "fd-close", "os.fstat(ctx['secret_fd'])",
      "EBADF"),
]

# Things the sandbox must still allow (so the refusals above are not a broken sandbox).
ALLOWED: list[Case] = [
    c("write in the rw grant", "-", "open(ctx['own_rw'] + '/ok.txt', 'w').write('ok')",
      value=None),
    c("read the ro grant", "-", "result = open(ctx['own_ro'] + '/data.txt').read()",
      value="read me"),
    c("private /tmp is writable", "-", "open('/tmp/exo-escape-battery-probe', 'w').write('x')"),
    c("write /dev/null", "-", "open('/dev/null', 'w').write('x')"),
    c("import exo_std", "-", "import exo_std; result = exo_std.__name__", value="exo_std"),
    c("signal itself", "-", "os.kill(os.getpid(), 0)"),
    c("run the host python", "-", """
        import subprocess
        result = subprocess.run([ctx['python'], '-c', 'print(6*7)'], capture_output=True,
                                text=True, check=True).stdout.strip()""", value="42"),
]


def main_spec(world: World) -> SandboxSpec:
    return SandboxSpec(read_paths=(world.own_ro,), write_paths=(world.own_rw,),
                       exec_paths=(world.exec_dir,), memory_max=512 << 20, pids_max=64,
                       cpu_max=1.0)


@pytest.fixture(scope="module")
def outcomes(world: World) -> dict[str, dict[str, object]]:
    cases = {x.name: x.code for x in ESCAPES + ALLOWED}
    result, rc, err = run_cases(main_spec(world), cases, world.ctx)
    assert rc == 0, err
    return result


def _check(case: Case, outcome: dict[str, object]) -> None:
    if case.errno is not None:
        assert not outcome["ok"], f"{case.name}: NOT refused ({outcome})"
        assert outcome.get("errno") == case.errno, (
            f"{case.name}: expected {case.errno} from {case.mechanism}, got {outcome}")
    else:
        assert outcome["ok"], f"{case.name}: failed: {outcome}"
        assert outcome["value"] == case.value, f"{case.name}: {outcome}"


def test_battery_size() -> None:
    assert len(ESCAPES) + len(NET_ESCAPES) + 4 >= 40


@pytest.mark.parametrize("case", ESCAPES, ids=lambda x: f"{x.mechanism}: {x.name}")
def test_escape_refused(case: Case, outcomes: dict[str, dict[str, object]]) -> None:
    _check(case, outcomes[case.name])


@pytest.mark.parametrize("case", ALLOWED, ids=lambda x: x.name)
def test_granted_access_works(case: Case, outcomes: dict[str, dict[str, object]]) -> None:
    _check(case, outcomes[case.name])


# ---- a net:// capability for one TCP port: everything else still refused ----------------
NET_ESCAPES: list[Case] = [
    c("TCP connect to a port not granted", "landlock", """
        import socket
        socket.create_connection(('127.0.0.1', ctx['tcp_port']), timeout=2)""", "EACCES"),
    c("TCP bind a port not granted", "landlock",
      "import socket; socket.socket().bind(('127.0.0.1', 0))", "EACCES"),
    c("UDP socket (Landlock cannot filter it)", "seccomp",
      "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)", "EPERM"),
    c("SCTP socket (not TCP)", "seccomp",
      "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132)", "EPERM"),
    c("abstract unix socket of the kernel (shared netns)", "landlock", """
        import socket
        socket.socket(socket.AF_UNIX).connect('\\0' + ctx['abstract'])""", "EPERM"),
]
NET_ALLOWED: list[Case] = [
    c("TCP connect to the granted port", "-", """
        import socket
        socket.create_connection(('127.0.0.1', ctx['tcp_port_allowed']), timeout=2).close()
        result = 'connected'""", value="connected"),
    c("resolv.conf is visible with a net capability", "-",
      "result = os.path.exists('/etc/resolv.conf')", value=True),
]


@pytest.fixture(scope="module")
def net_outcomes(world: World) -> dict[str, dict[str, object]]:
    spec = SandboxSpec(net=NetPolicy.tcp(connect=(world.tcp_port_allowed,)))
    cases = {x.name: x.code for x in NET_ESCAPES + NET_ALLOWED}
    result, rc, err = run_cases(spec, cases, world.ctx)
    assert rc == 0, err
    return result


@pytest.mark.parametrize("case", NET_ESCAPES + NET_ALLOWED,
                         ids=lambda x: f"{x.mechanism}: {x.name}")
def test_net_capability(case: Case, net_outcomes: dict[str, dict[str, object]]) -> None:
    _check(case, net_outcomes[case.name])


# ---- resource exhaustion: one sandbox each, the cgroup refuses ---------------------------
def test_memory_exhaustion_is_killed_by_cgroup(world: World) -> None:
    """cgroup: allocating past memory_max gets the process OOM-killed (SIGKILL)."""
    spec = SandboxSpec(memory_max=64 << 20)
    proc = spawn(spec, [sys.executable, "-c", "x = b'\\x01' * (256 << 20); print('survived')"],
                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read()
    rc = proc.wait(60)
    assert out == b"" and rc == 128 + 9, (out, rc)


def test_fork_bomb_is_stopped_by_cgroup(world: World) -> None:
    """cgroup: fork fails with EAGAIN at pids_max; the host is unaffected."""
    code = textwrap.dedent("""
        import os, time, errno
        n = 0
        try:
            for _ in range(1000):
                if os.fork() == 0:
                    time.sleep(30); os._exit(0)
                n += 1
        except OSError as e:
            print(n, errno.errorcode[e.errno])
    """)
    proc = spawn(SandboxSpec(pids_max=16), [sys.executable, "-c", code],
                 stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.readline().split()
    proc.kill()
    assert out[1] == b"EAGAIN", out
    assert int(out[0]) < 16  # the target itself counts too


def test_exhausting_tmp_is_bounded_by_memory_cgroup(world: World) -> None:
    """cgroup: the private /tmp is tmpfs charged to the sandbox's memory limit."""
    code = ("open('/tmp/fill', 'wb').write(b'\\x01' * (200 << 20)); print('survived')")
    proc = spawn(SandboxSpec(memory_max=64 << 20), [sys.executable, "-c", code],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    rc = proc.wait(60)
    assert b"survived" not in out, (rc, err[-500:])


def test_other_sandbox_is_invisible(world: World, tmp_path: Path) -> None:
    """mount-ns / pid-ns: a second app's private /tmp and its process cannot be reached."""
    holder = spawn(SandboxSpec(), [sys.executable, "-c",
                                   "open('/tmp/b-secret','w').write('s'); import time; "
                                   "print('up', flush=True); time.sleep(60)"],
                   stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"up\n"
        ctx = {**world.ctx, "b_pid": holder.pid}
        cases = {
            "tmp": "open('/tmp/b-secret').read()",
            "proc": "os.listdir('/proc/%d/root/tmp' % ctx['b_pid'])",
            "kill": "import signal; os.kill(ctx['b_pid'], signal.SIGKILL)",
        }
        res, _rc, _err = run_cases(SandboxSpec(), cases, ctx)
        assert res["tmp"].get("errno") == "ENOENT", res  # mount-ns: private /tmp
        assert res["proc"].get("errno") == "ENOENT", res  # pid-ns
        assert res["kill"].get("errno") == "ESRCH", res  # pid-ns
        assert holder.poll() is None
    finally:
        holder.kill()
    assert os.path.exists(f"/proc/{os.getpid()}")


# ---- attribution: prove the named mechanism is the one that refused ---------------------
def test_seccomp_cases_are_refused_by_seccomp(world: World) -> None:
    """With a filter answering a marker errno, every seccomp case returns that marker."""
    marker = __import__("errno").errorcode[SECCOMP_MARKER_ERRNO]
    for spec, battery in ((main_spec(world), ESCAPES),
                          (SandboxSpec(net=NetPolicy.tcp(connect=(world.tcp_port_allowed,))),
                           NET_ESCAPES)):
        cases = {x.name: x.code for x in battery
                 if x.mechanism == "seccomp" and x.errno == "EPERM"}
        res, rc, err = run_cases(spec, cases, world.ctx, ablate=frozenset({"seccomp-marker"}))
        assert rc == 0, err
        wrong = {k: v for k, v in res.items() if v.get("errno") != marker}
        assert not wrong, wrong


def test_landlock_cases_are_refused_by_landlock(world: World) -> None:
    """Without Landlock, no Landlock case fails with the errno attributed to Landlock."""
    # Signalling the namespace init last: without Landlock it may end the sandbox.
    for spec, battery in ((main_spec(world), ESCAPES),
                          (SandboxSpec(net=NetPolicy.tcp(connect=(world.tcp_port_allowed,))),
                           NET_ESCAPES)):
        chosen = sorted((x for x in battery if x.mechanism == "landlock"),
                        key=lambda x: x.name.startswith("signal"))
        cases = {x.name: x.code for x in chosen}
        res, _rc, _err = run_cases(spec, cases, world.ctx, ablate=frozenset({"landlock"}))
        same = {x.name: res[x.name] for x in chosen
                if not res[x.name]["ok"] and res[x.name].get("errno") == x.errno}
        assert not same, same



def test_net_any_reaches_the_host_but_keeps_other_layers(world: World) -> None:
    """NetPolicy.any shares the host network; seccomp and Landlock scopes still apply."""
    cases = {
        "tcp": "import socket; socket.create_connection(('127.0.0.1', ctx['tcp_port']), 2)",
        "raw": "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)",
        "abstract": "import socket; socket.socket(socket.AF_UNIX).connect('\\0' + ctx['abstract'])",
    }
    res, rc, err = run_cases(SandboxSpec(net=NetPolicy.any()), cases, world.ctx)
    assert rc == 0, err
    assert res["tcp"]["ok"], res
    assert res["raw"].get("errno") == "EPERM", res  # seccomp
    assert res["abstract"].get("errno") == "EPERM", res  # landlock scope


# ---- grants of special files: refused before any process exists -------------------------
def test_sockets_fifos_and_devices_are_never_granted(world: World, tmp_path: Path) -> None:
    """spec check: a socket (a kernel's control socket), a FIFO or a device node would be
    bound into the sandbox as it is; each is refused with a one-line SandboxError."""
    import socket

    from exo.sandbox import SandboxError

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "control.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    device = tmp_path / "null"
    os.mknod(device, 0o20600, os.makedev(1, 3))  # a character device (root may mknod)
    try:
        for special in (fifo, sock_path, device):
            for spec in (SandboxSpec(read_paths=(special,)),
                         SandboxSpec(write_paths=(special,))):
                with pytest.raises(SandboxError, match="not a directory or regular file"):
                    spawn(spec, ["/bin/true"])
    finally:
        listener.close()
