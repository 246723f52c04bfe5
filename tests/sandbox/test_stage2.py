"""exo-stage2, the compiled last step of a sandbox start, run directly (outside bubblewrap).

The escape battery proves what it enforces inside real sandboxes; these tests pin down its
contract with the launcher (and, as ``--spare``, with the zygote): the config records, what
it reports on the status pipe, and what it leaves open for the target.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from exo.sandbox import SandboxError, SandboxUnavailable, _bwrap
from exo.sandbox.launcher import _memfd, _stage2_config


def _stage2(build: Callable[[int], bytes], *extra_fds: int) -> tuple[int, bytes, str]:
    """Run exo-stage2 on the config ``build(status_fd)``, with ``extra_fds`` inherited:
    (exit status, what it wrote on the status pipe, the target's stdout)."""
    r, w = os.pipe()
    fd = _memfd("test-stage2", build(w))
    try:
        proc = subprocess.run([str(_bwrap.stage2_path()), str(fd)],
                              pass_fds=(fd, w, *extra_fds), capture_output=True, text=True,
                              timeout=30, check=False)
    finally:
        os.close(fd)
        os.close(w)
    with os.fdopen(r, "rb") as fh:
        return proc.returncode, fh.read(), proc.stdout


def test_it_execs_the_target_with_exactly_the_given_env_and_descriptors() -> None:
    keep_r, keep_w = os.pipe()
    leak_r, leak_w = os.pipe()  # inherited by exo-stage2, must not reach the target
    code = ("import json, os; print(json.dumps([int(f) for f in os.listdir('/proc/self/fd')]));"
            "print(open('/proc/self/environ', 'rb').read())")  # the env execve got
    try:
        status, report, out = _stage2(lambda w: _stage2_config(
            w, [keep_w], [], [sys.executable, "-S", "-c", code],
            {"ONLY": "this", "PATH": "/usr/bin:/bin"}), keep_w, leak_r, leak_w)
    finally:
        for fd in (keep_r, keep_w, leak_r, leak_w):
            os.close(fd)
    assert status == 0 and report == b"R"
    fds_line, env_line = out.splitlines()[:2]
    fds = json.loads(fds_line)
    assert keep_w in fds and leak_r not in fds and leak_w not in fds
    assert env_line == repr(b"ONLY=this\x00PATH=/usr/bin:/bin\x00")


def test_however_many_descriptors_come_in_none_reaches_the_target() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4096:
        pytest.skip("needs RLIMIT_NOFILE >= 4096")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    base = os.open("/dev/null", os.O_RDONLY)
    many = [os.dup(base) for _ in range(2500)]  # more than one round of stage 2's closing
    code = "import os; print(len(os.listdir('/proc/self/fd')))"
    try:
        status, report, out = _stage2(lambda w: _stage2_config(
            w, [], [], [sys.executable, "-S", "-c", code], {}), *many)
    finally:
        for fd in (base, *many):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert status == 0 and report == b"R"
    assert int(out) == 4  # stdin, stdout, stderr and listdir's own descriptor


def test_a_failed_exec_is_reported_on_the_status_pipe() -> None:
    status, report, _ = _stage2(lambda w: _stage2_config(
        w, [], [], ["/nonexistent/program"], {"PATH": "/bin"}))
    # "R" went out just before execve; "X", the errno and the error after it.
    assert status == 127
    assert report == b"RX2 cannot run '/nonexistent/program': No such file or directory"


def _raw(*records: str) -> Callable[[int], bytes]:
    """A config written by hand (status first), to feed exo-stage2 what the launcher won't."""
    return lambda w: b"".join(r.encode() + b"\0" for r in ("status", str(w), *records))


@pytest.mark.parametrize(("records", "error"), [
    (("bogus", "1"), "expected argv, got bogus"),
    (("path", "1", "/tmp", "argv", "1", "/bin/true", "env", "0"), "expected argv, got path"),
    (("keep", "999", "argv", "1", "/bin/true", "env", "0"), "kept descriptor 999 is not open"),
    (("keep", "1", "argv", "1", "/bin/true", "env", "0"), "keep fd 1 is stdio"),
    (("keep", "+4", "argv", "1", "/bin/true", "env", "0"), "bad keep fd '+4'"),
    (("keep", "4294967300", "argv", "1", "/bin/true", "env", "0"), "out of range"),
    (("argv", "1", "/bin/true"), "expected env, got the end"),
    (("argv", "1", "/bin/true", "env", "0", "path", "4", "/etc"),
     "unexpected record path after env"),
    (("argv", "0", "env", "0"), "empty argv"),
    (("rlimit", "16", "1", "1", "argv", "1", "/bin/true", "env", "0"),
     "rlimit resource 16 out of range"),
    (("rlimit", "7", "-1", "1", "argv", "1", "/bin/true", "env", "0"), "bad rlimit soft"),
    (("rlimit", "7", "1", "argv", "1", "/bin/true", "env", "0"), "bad rlimit hard"),
    (("rlimit", "7", "5", "2", "argv", "1", "/bin/true", "env", "0"),
     "ulimit: resource 7: Invalid argument"),
    ((*(["rlimit", "7", "9", "9"] * 17), "argv", "1", "/bin/true", "env", "0"),
     "too many rlimit records"),
    # A ruleset whose attribute size would make the kernel ignore handled_access_net:
    (("ruleset", "8191", "3", "0", "8", "49159", "argv", "1", "/bin/true", "env", "0"),
     "attribute size 8 does not fit the rights"),
])
def test_bad_configs_are_refused_before_anything_runs(records: tuple[str, ...],
                                                       error: str) -> None:
    status, report, _ = _stage2(_raw(*records))
    assert status == 127
    assert report.startswith(b"E") and error.encode() in report, report


def test_rlimits_are_set_just_before_exec() -> None:
    """A shell's `ulimit` (``rlimit`` records): the target starts with them, even one
    too low for stage 2's own setup (one descriptor more than stdio)."""
    nofile, core = resource.RLIMIT_NOFILE, resource.RLIMIT_CORE
    status, report, out = _stage2(lambda w: _stage2_config(
        w, [], [], ["/bin/sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -c"], {"PATH": "/bin"},
        rlimits=((nofile, 4, 6), (core, 0, 0))))
    assert status == 0 and report == b"R" and out == "4\n6\n0\n"


def test_a_nul_cannot_smuggle_a_record_in() -> None:
    with pytest.raises(SandboxError, match="NUL"):
        _stage2_config(3, [], [], ["/bin/true"], {"X": "y\0path\0" + "4" + "\0/etc"})


def test_usage() -> None:
    usage = subprocess.run([str(_bwrap.stage2_path())], capture_output=True, text=True,
                           check=False)
    assert usage.returncode == 2 and "usage: exo-stage2 CONFIG_FD" in usage.stderr


def test_a_missing_helper_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setattr(_bwrap, "__file__", str(tmp_path / "_bwrap.py"))
    with pytest.raises(SandboxUnavailable, match=r"stage-2 helper .* is not built: run `make"):
        _bwrap.stage2_path()


# --spare: the per-session zygote's spare (its request: exo.sandbox.zygote._records). Run in
# a mount namespace of its own (`unshare -m`): it remounts / read-only.
_ALLOW_ALL = struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000)  # BPF_RET|BPF_K: SECCOMP_RET_ALLOW
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a spare mounts: needs root")


#: What a prepared spare's init said on its socket, last call (``_spare``).
said: list[bytes] = []


def _spare(records: list[str], fds: list[int],
           prepare: list[str] | None = None) -> tuple[int, str]:
    """Start ``exo-stage2 --spare`` in a private mount namespace (``prepare``: with
    ``--prepare`` and those kept paths instead, as pid 1 of a new pid namespace, as the
    zygote starts it: it makes its own), hand it ``records`` and ``fds`` over its socket:
    (exit status, its stdout); what its init said is left in ``said``."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    spare = [str(_bwrap.stage2_path()), "--spare", str(theirs.fileno())]
    try:
        proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", *spare, "--prepare", *prepare]
            if prepare is not None else
            ["unshare", "--mount", "--propagation", "private", *spare],
            pass_fds=(theirs.fileno(),), stdout=subprocess.PIPE, text=True)
    finally:
        theirs.close()
    said.clear()
    with ours:
        socket.send_fds(ours, [b"".join(r.encode() + b"\0" for r in records)], fds)
        out, _ = proc.communicate(timeout=30)
        ours.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                msg, got, _, _ = socket.recv_fds(ours, 64, 1)
                for fd in got:
                    os.close(fd)
                if not msg:
                    break
                said.append(msg + b"+fd" * len(got))
    return proc.returncode, out


def _spare_script(script: str, cwd: str,
                  prepare: list[str] | None = None) -> tuple[int, bytes, str]:
    """A spare that runs ``/bin/sh -c script`` in ``cwd``: (its status, what it reported
    on its status pipe, the script's stdout)."""
    status_r, status_w = os.pipe()
    out_r, out_w = os.pipe()
    config = _memfd("test-spare", _stage2_config(5, [], [], ["/bin/sh", "-c", script],
                                                 {"PATH": "/usr/bin:/bin"}))
    bpf = _memfd("test-spare-bpf", _ALLOW_ALL)
    try:
        status, _ = _spare(["status", "1", "seccomp", "3", "cwd", cwd,
                            "fd", "1", "0", "fd", "5", "1", "fd", "6", "2", "config", "6"],
                           [out_w, status_w, config, bpf], prepare)
    finally:
        for fd in (status_w, out_w, config, bpf):
            os.close(fd)
    with os.fdopen(status_r, "rb") as fh:
        report = fh.read()
    with os.fdopen(out_r) as fh:
        return status, report, fh.read()


@needs_root
def test_a_spare_builds_the_command_and_goes_on_as_stage_2(tmp_path: Path) -> None:
    script = "pwd; if touch /exo-spare-probe 2>/dev/null; then echo rw; else echo ro; fi"
    status, report, out = _spare_script(script, str(tmp_path))
    assert status == 0 and report == b"R", report
    assert out.split() == [str(tmp_path), "ro"]  # its cwd; / read-only
    assert not Path("/exo-spare-probe").exists()


@needs_root
def test_a_prepared_spare_has_fresh_tmp_and_shm_with_the_kept_paths_read_only() -> None:
    """``--prepare`` (how the zygote starts its spares, with posix_spawn): a mount
    namespace of its own, new /tmp and /dev/shm, a kept path below /tmp shown read-only;
    the host's own /tmp is untouched."""
    with tempfile.TemporaryDirectory(dir="/tmp") as kept, \
            tempfile.NamedTemporaryFile(dir="/tmp") as host_file:
        Path(kept, "mark").write_text("kept\n")
        script = (f"ls -A /tmp; ls -A /dev/shm; cat {kept}/mark; "
                  f"test -e {host_file.name} && echo leaked; "
                  f"touch {kept}/x 2>/dev/null && echo kept-rw; touch /tmp/new && echo tmp-rw")
        status, report, out = _spare_script(script, "/", prepare=[kept])
        assert status == 0 and report == b"R", report
        # Its init sent the command's pidfd, then the command's wait status and the CPU
        # microseconds (user, system) of what it reaped.
        assert said[0] == b"P+fd" and re.fullmatch(rb"X0 \d+ \d+", said[1]), said
        # /tmp holds only the kept path's parents; /dev/shm is empty
        assert out.split() == [kept.split("/")[2], "kept", "tmp-rw"], out
        assert not Path(kept, "x").exists() and not Path("/tmp/new").exists()


@needs_root
def test_a_spare_that_cannot_prepare_itself_tells_the_zygote_why() -> None:
    """A failure while preparing (here: a runtime path to keep that is not there) is one
    line to the zygote on the spare's socket, "E" and the reason, and exit 127: the
    zygote then takes a fresh spare, or answers the command with that reason."""
    missing = tempfile.mktemp(dir="/tmp", prefix="exo-missing-")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        try:
            proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", str(_bwrap.stage2_path()), "--spare",
                 str(theirs.fileno()), "--prepare", missing], pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        assert proc.wait(timeout=30) == 127
        ours.settimeout(5)
        said = ours.recv(512)
    assert said == f"Ezygote: open_tree {missing}: No such file or directory".encode()


@needs_root
@pytest.mark.parametrize(("records", "error"), [
    (["status", "0", "cwd", "/"], "seccomp expected"),
    (["status", "0", "seccomp", "7"], "seccomp index 7 out of range"),
    (["status", "0", "close", "0", "seccomp", "0"], "seccomp expected"),  # no such record
    (["status", "0", "seccomp", "0", "mount", "relative", "0", "1", "0"],
     "mount point relative is not absolute"),
])
def test_a_bad_spare_request_is_refused_before_anything_is_mounted(
        records: list[str], error: str) -> None:
    status_r, status_w = os.pipe()
    try:
        status, _ = _spare(records, [status_w])
    finally:
        os.close(status_w)
    with os.fdopen(status_r, "rb") as fh:
        report = fh.read()
    assert status == 127 and report.startswith(b"E") and error.encode() in report, report


def test_a_spare_the_zygote_gives_up_on_exits_quietly() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen([str(_bwrap.stage2_path()), "--spare", str(theirs.fileno())],
                            pass_fds=(theirs.fileno(),))
    theirs.close()
    ours.close()
    assert proc.wait(timeout=30) == 0


@needs_root
def test_a_spares_late_error_reaches_the_status_pipe_whatever_moved_over_it() -> None:
    """The descriptors a spare puts in place may land on the number its status pipe came
    in at: an error after that (here: a seccomp program Linux refuses) is still reported
    on the status pipe, never written into the command's descriptor. (Here: a config
    descriptor that is not open; the seccomp program, one Linux would refuse, is only
    loaded later, after "go".)"""
    status_r, status_w = os.pipe()
    other_r, other_w = os.pipe()
    bad = _memfd("test-spare-bad-bpf", struct.pack("=HBBI", 0xFFFF, 0, 0, 0))
    try:
        moves = [r for n in range(3, 12) for r in ("fd", str(n), "1")]
        status, _ = _spare(["status", "0", "seccomp", "2", "cwd", "/", *moves,
                            "config", "20"], [status_w, other_w, bad])
    finally:
        for fd in (status_w, other_w, bad):
            os.close(fd)
    with os.fdopen(status_r, "rb") as fh:
        report = fh.read()
    with os.fdopen(other_r, "rb") as fh:
        leaked = fh.read()
    assert status == 127 and report.startswith(b"E") and b"config fd 20" in report, report
    assert leaked == b""
