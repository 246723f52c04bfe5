"""Users as capability roots, enforced by the kernel: a login's set lives in the kernel,
every process a session starts derives from it, and runs as the session's own
unprivileged host uid. The shell's checks are bypassed on purpose here: the kernel's API
is called with the session's token, as a shell with a bug (or a hostile one) would."""

from __future__ import annotations

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
            assert set(status["Gid"].split()) == {str(seen[proc.pid])}
            for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(status[caps], 16) == 0, (caps, status[caps])
        uids = list(seen.values())
        assert len(set(uids)) == 3 and min(uids) >= EXO_UID_BASE  # never 0, never shared
        assert uids[2] == EXO_UID_BASE  # root's processes too: not host root
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
        term.expect(rf"{EXO_UID_BASE + user.uid}\r\nalice\r\n{EXO_UID_BASE + user.uid}\r\n")
        term.sendline("/usr/bin/sleep 30 &")
        term.expect(r"\[1\]")
        time.sleep(1.0)
        term.sendline("ps")
        term.expect(r"sleep")
        # from the host: the sleeping process is alice's host uid, not root
        sleepers = [p for p in os.listdir("/proc") if p.isdigit()
                    and _cmdline(p) == "/usr/bin/sleep\x0030\x00"]
        assert sleepers
        uids = {_host_status(int(p))["Uid"].split()[0] for p in sleepers}
        assert str(EXO_UID_BASE + user.uid) in uids
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

    def stage2(uid: int) -> tuple[int, bytes, str]:
        r, w = os.pipe()
        fd = _memfd("test-stage2", _stage2_config(
            w, [], [], ["/bin/sh", "-c", "grep -E '^(Uid|CapEff|CapBnd|CapPrm)' "
                        "/proc/self/status"], {"PATH": "/usr/bin:/bin"}, uid))
        try:
            proc = subprocess.run([str(_bwrap.stage2_path()), str(fd)], pass_fds=(fd, w),
                                  capture_output=True, text=True, timeout=30, check=False)
        finally:
            os.close(fd)
            os.close(w)
        with os.fdopen(r, "rb") as fh:
            return proc.returncode, fh.read(), proc.stdout

    status, report, _ = stage2(999)
    assert status == 127 and b"privileged" in report
    if os.geteuid() != 0:
        return
    status, report, out = stage2(EXO_UID_BASE + 7)
    assert status == 0 and report == b"R", report
    lines = dict(line.split(":", 1) for line in out.splitlines())
    assert lines["Uid"].split() == [str(EXO_UID_BASE + 7)] * 4
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
