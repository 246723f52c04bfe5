"""Users as capability roots, enforced by the kernel: a login's set lives in the kernel,
every process a session starts derives from it, and runs as the session's own
unprivileged host uid. The shell's checks are bypassed on purpose here: the kernel's API
is called with the session's token, as a shell with a bug (or a hostile one) would."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pexpect
import pytest
from tests.system.test_interactive import boot_terminal, login_as

from exo.kernel.caps.errors import CapabilityError
from exo.kernel.kernel import Kernel
from exo.kernel.manifest import Manifest, parse_grant
from exo.kernel.sessions import EXO_UID_BASE
from exo.kernel.users import UserDatabase
from exo.sandbox.spec import process_uids

SLEEP = ["/bin/sleep", "30"]


@pytest.fixture
def alice(kernel: Kernel) -> str:
    """The token of a login of the normal user alice."""
    UserDatabase(kernel.root).add("alice", "wonderland")
    (kernel.root / "home" / "alice").mkdir()
    opened = kernel.api.login("alice", "wonderland")
    assert opened is not None and opened.uid >= 1000
    return opened.token


def _null() -> tuple[int, int, int]:
    fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    return fd, fd, fd


def test_the_kernel_refuses_a_grant_the_session_does_not_hold(kernel: Kernel,
                                                              alice: str) -> None:
    api = kernel.api
    stdio = _null()
    try:
        for cap in ("storage://=READ,WRITE", "storage://home/root=READ",
                    "storage://home/alice=READ,WRITE,TRANSFER", "storage://etc/passwd=READ",
                    "net://*=SEND"):
            with pytest.raises(CapabilityError, match="not held by this session"):
                api.start(["/bin/true"], [parse_grant(cap)], stdio=stdio, session=alice)
        # a manifest is no way around it either
        with pytest.raises(CapabilityError):
            api.start(["/bin/true"], manifest=Manifest(grants=(parse_grant("storage://=READ"),)),
                      stdio=stdio, session=alice)
        assert len(api.ps()) == 1  # nothing started
        denials = api.audit(event="deny", limit=20)  # audited, as every denial
        assert any(str(d["reason"]).startswith("derive: CapabilityDenied") and
                   d["resource"] == "storage://" for d in denials)
        # what alice holds, she gets: derived from her session's set
        proc = api.start(SLEEP, [parse_grant("storage://home/alice=READ,WRITE")],
                         stdio=stdio, session=alice)
        try:
            held = api.caps(proc.pid)
            assert [(c["resource"], c["rights"]) for c in held] == [
                ("storage://home/alice", "READ,WRITE")]
            # logout: the kernel revokes what the session's processes derived
            assert api.end_session(alice) >= 1
            assert api.caps(proc.pid) == []
            with pytest.raises(PermissionError):
                api.start(["/bin/true"], stdio=stdio, session=alice)
        finally:
            api.kill(proc.pid, 9)
            api.wait(proc)
    finally:
        os.close(stdio[0])


def test_power_users_and_other_accounts_need_what_a_user_lacks(kernel: Kernel,
                                                               alice: str) -> None:
    api = kernel.api
    with pytest.raises(PermissionError, match="device://power"):
        api.request_shutdown(session=alice)
    assert not kernel.shutdown_requested.is_set()
    with pytest.raises(PermissionError, match="storage://etc/passwd"):
        api.add_user(alice, "mallory", "x")
    with pytest.raises(PermissionError, match="storage://etc/passwd"):
        api.set_password(alice, "root", "x")
    assert UserDatabase(kernel.root).get("mallory") is None
    assert not api.session_holds(alice, "storage://home/root", "READ")
    assert api.session_holds(alice, "storage://home/alice/notes", "READ,WRITE")
    with pytest.raises(PermissionError, match="authentication failure"):
        api.become(alice, "root", "")  # root has no password: never entered this way
    root = api.console_session()
    other = api.become(root.token, "alice", None)  # root needs no password
    assert other.user == "alice" and not other.everything
    api.request_shutdown(session=root.token)
    assert kernel.shutdown_requested.is_set()


def _host_status(host_pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = " ".join(value.split())
    return fields


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root kernel switches host uids")
def test_each_users_processes_run_as_a_distinct_unprivileged_host_uid(kernel: Kernel,
                                                                      alice: str) -> None:
    api = kernel.api
    UserDatabase(kernel.root).add("bob", "builder")
    bob = api.login("bob", "builder")
    root = api.console_session()
    assert bob is not None
    stdio = _null()
    procs = []
    try:
        for token in (alice, bob.token, root.token):
            procs.append(api.start(SLEEP, stdio=stdio, session=token))
        seen = {}
        for proc in procs:
            status = _host_status(proc.host_pid)  # as the host sees it
            uids = set(status["Uid"].split())
            assert len(uids) == 1, status["Uid"]  # real, effective, saved, fs: one uid
            seen[proc.pid] = int(uids.pop())
            gids = set(status["Gid"].split())
            assert len(gids) == 1 and status["Groups"] == "", status
            # the account's gid; a uid of the account's own range (one per process)
            assert seen[proc.pid] in process_uids(int(gids.pop()))
            for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(status[caps], 16) == 0, (caps, status[caps])
        uids = list(seen.values())
        assert len(set(uids)) == 3 and min(uids) >= EXO_UID_BASE  # never 0, never shared
        assert uids[2] in process_uids(EXO_UID_BASE)  # root's processes too: not host root
    finally:
        for proc in procs:
            api.kill(proc.pid, 9)
            api.wait(proc)
        os.close(stdio[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root kernel switches host uids")
def test_id_in_a_users_shell_is_their_own_unprivileged_uid(exo_env: dict[str, str],
                                                           exo_root: Path) -> None:
    from exo.kernel.tree import ensure_tree

    ensure_tree(exo_root)
    user = UserDatabase(exo_root).add("alice", "wonderland")
    (exo_root / "home" / "alice").mkdir()
    with boot_terminal(exo_env) as term:
        login_as(term, "alice", "wonderland")
        term.expect(r"exo-os:[^\r\n$]*\$")
        term.sendline("/usr/bin/id -u; /usr/bin/id -un; /usr/bin/id -G")
        term.expect(r"(\d+)\r\nalice\r\n(\d+)\r\n")
        uid, gid = (int(n) for n in term.match.groups())
        # a host uid of its own, named alice; alice's group
        assert gid == EXO_UID_BASE + user.uid and uid in process_uids(gid)
        term.sendline("/usr/bin/sleep 30 &")
        term.expect(r"\[1\]")
        time.sleep(1.0)
        term.sendline("ps")
        term.expect(r"sleep")
        # from the host: the sleeping process is alice's host uid, not root
        sleepers = [p for p in os.listdir("/proc") if p.isdigit()
                    and _cmdline(p) == "/usr/bin/sleep\x0030\x00"]
        assert sleepers
        uids = {int(_host_status(int(p))["Uid"].split()[0]) for p in sleepers}
        assert uids & set(process_uids(EXO_UID_BASE + user.uid))
        term.sendline("kill %1; wait")
        term.expect(r"exo-os:[^\r\n$]*\$")
        term.sendline("shutdown")
        term.expect("permission denied")
        term.sendline("exit")
        term.expect("exo-os login: ")
        term.sendeof()
        term.expect(pexpect.EOF)


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def test_account_and_process_uids_are_the_same_ranges_everywhere() -> None:
    from exo.kernel.sessions import MAX_EXO_UID, host_uid
    from exo.sandbox.spec import ACCOUNT_UID_BASE, ACCOUNT_UIDS

    assert EXO_UID_BASE == ACCOUNT_UID_BASE and host_uid(MAX_EXO_UID) in ACCOUNT_UIDS
    first, last = process_uids(host_uid(0)), process_uids(host_uid(MAX_EXO_UID))
    assert first.start > host_uid(MAX_EXO_UID) and last.stop <= 1 << 31
    assert not set(process_uids(host_uid(1))) & set(first)  # two users never share one
    assert not process_uids(1000) and not process_uids(0)  # not an Exo account: none


def test_a_sandbox_never_runs_as_a_privileged_account() -> None:
    from exo.sandbox import SandboxError, SandboxSpec

    for account in (("root", 0), ("daemon", 1), ("x", 999), ("bad name", 301000),
                    ("x", 1 << 31)):
        with pytest.raises(SandboxError, match="account"):
            SandboxSpec(account=account)  # type: ignore[arg-type]
    with pytest.raises(SandboxError, match="not both"):
        SandboxSpec(account=("a", 301000), user=("postgres", 1001))


def test_exo_stage2_becomes_the_account_and_refuses_a_privileged_one() -> None:
    """exo-stage2's "account" record, run directly as root: the target runs as that uid
    with every capability set empty; a uid below 1000 is refused before any exec."""
    import subprocess

    from exo.sandbox import _bwrap
    from exo.sandbox.launcher import _memfd, _stage2_config

    def stage2(uid: int, gid: int | None = None) -> tuple[int, bytes, str]:
        r, w = os.pipe()
        fd = _memfd("test-stage2", _stage2_config(
            w, [], [], ["/bin/sh", "-c", "grep -E '^(Uid|Gid|CapEff|CapBnd|CapPrm)' "
                        "/proc/self/status"], {"PATH": "/usr/bin:/bin"},
            (uid, uid if gid is None else gid)))
        try:
            proc = subprocess.run([str(_bwrap.stage2_path()), str(fd)], pass_fds=(fd, w),
                                  capture_output=True, text=True, timeout=30, check=False)
        finally:
            os.close(fd)
            os.close(w)
        with os.fdopen(r, "rb") as fh:
            return proc.returncode, fh.read(), proc.stdout

    status, report, _ = stage2(999)
    assert status == 127 and b"account uid 999 is privileged" in report
    status, report, _ = stage2(EXO_UID_BASE + 7, 0)
    assert status == 127 and b"account gid 0 is privileged" in report
    if os.geteuid() != 0:
        return
    status, report, out = stage2(process_uids(EXO_UID_BASE + 7)[3], EXO_UID_BASE + 7)
    assert status == 0 and report == b"R", report
    lines = dict(line.split(":", 1) for line in out.splitlines())
    assert lines["Uid"].split() == [str(process_uids(EXO_UID_BASE + 7)[3])] * 4
    assert lines["Gid"].split() == [str(EXO_UID_BASE + 7)] * 4
    assert all(int(lines[c], 16) == 0 for c in ("CapEff", "CapBnd", "CapPrm"))


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root kernel switches host uids")
def test_an_accounts_process_reaches_its_whole_view() -> None:
    """Every directory bubblewrap makes for the view is crossable by the account's uid
    (it makes missing parents 0700): /etc and /etc/ssl, the runtime, /tmp and /dev/shm
    writable, /dev/null."""
    from exo.sandbox import NetPolicy, SandboxSpec, spawn
    from exo.sandbox.namespace import RUNTIME_SRC

    r, w = os.pipe()
    script = (f"ls /etc/ssl/certs >/dev/null && cat /etc/passwd >/dev/null && "
              f"ls {RUNTIME_SRC}/exo_std >/dev/null && touch /tmp/t /dev/shm/t && "
              "echo x > /dev/null && id -un && echo all-ok")
    proc = spawn(SandboxSpec(net=NetPolicy.any(), cwd=Path("/"),
                             account=("alice", EXO_UID_BASE + 1000)),
                 ["/bin/sh", "-c", script], stdout=w, stderr=w)
    os.close(w)
    assert proc.wait(30) == 0
    with os.fdopen(r) as out:
        assert out.read().split() == ["alice", "all-ok"]


_INOTIFY = ("import ctypes, os, sys, time\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "n = 0\n"
            "while n < 400 and libc.inotify_init1(0) >= 0:\n"
            "    n += 1\n"
            "print(n, os.strerror(ctypes.get_errno()) if n < 400 else '', flush=True)\n"
            "time.sleep(float(sys.argv[1]))\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root kernel switches host uids")
def test_a_users_command_cannot_spend_the_per_uid_limits_of_their_others(
        kernel: Kernel, alice: str) -> None:
    """Linux counts inotify instances per uid (``max_user_instances``), and pending
    signals, pipe pages and descriptors in flight too: each of a user's processes runs as
    a host uid of its own, so one that takes every instance it may leaves its sibling's
    (which failed with EMFILE when a user's processes shared the account's uid). The uid
    goes back once its process has ended."""
    api = kernel.api
    before = kernel.processes.uids.held()
    procs = []
    try:
        for wait in ("30", "0"):
            r, w = os.pipe()
            procs.append((api.start(["/usr/bin/python3", "-c", _INOTIFY, wait],
                                    stdio=(w, w, w), session=alice), r))
            os.close(w)
            with os.fdopen(os.dup(r)) as out:
                line = out.readline().split()
            limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
            assert int(line[0]) == min(limit, 400), line  # every one, both times
        assert api.wait(procs[1][0]) == 0
        uids = {_host_status(procs[0][0].host_pid)["Uid"].split()[0]}
        assert len(uids) == 1 and uids != {str(api.session(alice).host_uid)}
    finally:
        for proc, r in procs:
            with contextlib.suppress(LookupError):  # (the sibling was waited for)
                api.kill(proc.pid, 9)
                api.wait(proc)
            os.close(r)
    deadline = time.monotonic() + 10
    while kernel.processes.uids.held() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kernel.processes.uids.held() == before


def test_a_broken_grants_file_is_said_not_taken_for_a_wrong_password(
        exo_env: dict[str, str], exo_root: Path) -> None:
    from exo.kernel.tree import ensure_tree

    ensure_tree(exo_root)
    UserDatabase(exo_root).add("alice", "wonderland")
    (exo_root / "home" / "alice").mkdir()
    (exo_root / "etc" / "exo").mkdir(parents=True, exist_ok=True)
    (exo_root / "etc" / "exo" / "grants.toml").write_text("[all\n")
    with boot_terminal(exo_env) as term:
        login_as(term, "alice", "wonderland")
        term.expect("login: ")
        term.expect("the administrator must fix it before alice can log in")
        term.expect("exo-os login: ")
        assert "Login incorrect" not in (term.before or "")
        term.sendeof()
        term.expect(pexpect.EOF)
