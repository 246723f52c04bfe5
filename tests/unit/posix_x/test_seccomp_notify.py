"""The Hybrid tier's mechanism: a real child's opens brokered through seccomp user notification."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from exo.posix_x import _seccomp_notify as sn

pytestmark = pytest.mark.skipif(not sn.supported(), reason="no seccomp user notification")

SYSTEM = ("/etc/ld.so.cache", "/lib", "/lib64", "/usr/lib")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "hello.txt").write_text("hello\n")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "s.txt").write_text("secret\n")
    (tmp_path / "allowed" / "link").symlink_to("../secret/s.txt")
    (tmp_path / "out").mkdir()
    return tmp_path


def _run(tree: Path, argv: list[str], *extra: sn.Rule,
         system: bool = True) -> tuple[int, str, str, sn.Broker]:
    rules = [sn.Rule(p) for p in SYSTEM if system and os.path.exists(p)]
    rules += [sn.Rule(str(tree / "allowed")), *extra]
    out_path, err_path = tree / "out" / "stdout", tree / "out" / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        code, broker = sn.run(argv, rules, cwd=str(tree), stdout=out.fileno(),
                              stderr=err.fileno(), timeout=60)
    return code, out_path.read_text(), err_path.read_text(), broker


def _decision(broker: sn.Broker, suffix: str) -> sn.Decision:
    return next(d for d in broker.decisions if d.path.endswith(suffix))


def test_an_allowed_relative_open_is_opened_by_the_supervisor_and_injected(tree: Path) -> None:
    code, out, err, broker = _run(tree, ["/bin/cat", "allowed/hello.txt"])
    assert (code, out, err) == (0, "hello\n", "")
    d = _decision(broker, "/allowed/hello.txt")
    assert d.allowed and d.path == str(tree / "allowed" / "hello.txt")  # resolved via its cwd
    # The dynamic loader's own opens went through the broker too.
    assert any(x.path == "/etc/ld.so.cache" and x.allowed for x in broker.decisions)
    assert any("libc.so" in x.path and x.allowed for x in broker.decisions)


def test_a_path_outside_the_allow_list_gets_eacces(tree: Path) -> None:
    code, out, err, broker = _run(tree, ["/bin/cat", str(tree / "secret" / "s.txt")])
    assert code == 1 and out == "" and "Permission denied" in err
    assert _decision(broker, "/secret/s.txt").errno == errno.EACCES


@pytest.mark.parametrize("name", ["allowed/link", "allowed/../secret/s.txt"])
def test_symlinks_and_dotdot_cannot_lead_out_of_a_rule(tree: Path, name: str) -> None:
    code, out, err, broker = _run(tree, ["/bin/cat", name])
    assert code == 1 and "secret" not in out and "Permission denied" in err
    assert broker.decisions[-1].errno == errno.EACCES


def test_a_missing_file_gets_the_errno_linux_would_give(tree: Path) -> None:
    code, _, err, broker = _run(tree, ["/bin/cat", "allowed/nope"])
    assert code == 1 and "No such file" in err
    assert broker.decisions[-1].errno == errno.ENOENT


def test_writing_needs_a_writable_rule(tree: Path) -> None:
    script = "echo written > allowed/new.txt"
    code, _, err, broker = _run(tree, ["/bin/sh", "-c", script])
    assert code != 0 and "Permission denied" in err
    assert not (tree / "allowed" / "new.txt").exists()
    assert broker.decisions[-1].errno == errno.EACCES
    code, _, err, _ = _run(tree, ["/bin/sh", "-c", script],
                           sn.Rule(str(tree / "allowed"), write=True))
    assert code == 0, err
    assert (tree / "allowed" / "new.txt").read_text() == "written\n"


def test_without_the_system_directories_the_program_cannot_even_load(tree: Path) -> None:
    code, out, _, broker = _run(tree, ["/bin/cat", "allowed/hello.txt"], system=False)
    assert code != 0 and out == ""
    assert broker.decisions and not any(d.allowed for d in broker.decisions)


def test_rules_and_flags(tree: Path) -> None:
    with pytest.raises(sn.BrokerError, match="not an absolute path"):
        sn.Rule("relative/dir")
    writable, readonly = sn.Rule(str(tree), write=True), sn.Rule(str(tree / "allowed"))
    broker = sn.Broker([writable, readonly])
    fd, rule = broker.open_for(str(tree / "allowed" / "x"), os.O_WRONLY | os.O_CREAT, 0o600)
    assert (fd, rule) == (-errno.EACCES, readonly)  # the narrower rule wins
    fd, rule = broker.open_for(str(tree / "out" / "x"), os.O_WRONLY | os.O_CREAT, 0o600)
    assert fd >= 0 and rule is writable
    os.close(fd)
    assert broker.open_for(str(tree / "allowed" / "hello.txt"), 1 << 30, 0)[0] == -errno.EINVAL
    file_rule = sn.Broker([sn.Rule(str(tree / "allowed" / "hello.txt"))])
    fd, _ = file_rule.open_for(str(tree / "allowed" / "hello.txt"), os.O_RDONLY, 0)
    assert fd >= 0 and os.read(fd, 5) == b"hello"
    os.close(fd)
    assert file_rule.open_for(str(tree / "allowed" / "link"), os.O_RDONLY, 0)[0] == \
        -errno.EACCES


_PROBE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void show(const char *what, long r) {
    printf("%s %ld %d\n", what, r < 0 ? -1L : 0L, r < 0 ? errno : 0);
}

int main(void) {
    static char longpath[6000];
    memset(longpath, 'a', sizeof longpath - 1);
    show("null", syscall(SYS_openat, AT_FDCWD, NULL, O_RDONLY));
    show("unmapped", syscall(SYS_openat, AT_FDCWD, (char *)8, O_RDONLY));
    show("long", syscall(SYS_openat, AT_FDCWD, longpath, O_RDONLY));
    show("empty", syscall(SYS_openat, AT_FDCWD, "", O_RDONLY));
    show("openat2", syscall(SYS_openat2, AT_FDCWD, "allowed/hello.txt", NULL, 0));
    int fd = open("allowed/hello.txt", O_RDONLY | O_CLOEXEC);
    show("cloexec", fd);
    printf("cloexec-flag %d\n", fd >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? 1 : 0);
    fd = open("allowed/hello.txt", O_RDONLY);
    printf("plain-flag %d\n", fd >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? 1 : 0);
    int dir = open("allowed", O_RDONLY | O_DIRECTORY);
    show("dir", dir);
    fd = openat(dir, "hello.txt", O_RDONLY);
    char buf[16] = {0};
    show("dirfd", fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1);
    printf("dirfd-content %s", buf);
    show("badfd", syscall(SYS_openat, 999, "x", O_RDONLY));
    return 0;
}
"""


def test_a_hostile_target_gets_linuxs_errnos_and_its_flags(tree: Path) -> None:
    """Bad pointers, an overlong or empty path, openat2, O_CLOEXEC, a dirfd, a bad dirfd."""
    source = tree / "probe.c"
    source.write_text(_PROBE)
    binary = tree / "probe"
    built = subprocess.run(["gcc", "-O1", "-o", str(binary), str(source)],
                           capture_output=True, text=True, timeout=120)
    if built.returncode != 0:
        pytest.skip(f"cannot build the probe: {built.stderr[:200]}")
    code, out, err, _ = _run(tree, [str(binary)])
    assert code == 0, err
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["null"] == f"-1 {errno.EFAULT}"
    assert lines["unmapped"] == f"-1 {errno.EFAULT}"
    assert lines["long"] == f"-1 {errno.ENAMETOOLONG}"
    assert lines["empty"] == f"-1 {errno.ENOENT}"
    assert lines["openat2"] == f"-1 {errno.ENOSYS}"  # so a libc falls back to openat
    assert lines["cloexec"] == "0 0" and lines["cloexec-flag"] == "1"
    assert lines["plain-flag"] == "0"
    assert lines["dir"] == "0 0" and lines["dirfd"] == "0 0"
    assert lines["dirfd-content"] == "hello"
    assert lines["badfd"] == f"-1 {errno.EBADF}"


def test_o_directory_is_not_mistaken_for_o_tmpfile(tree: Path) -> None:
    """O_TMPFILE contains O_DIRECTORY's bit: a read-only rule opens directories, and refuses
    an anonymous file created in them."""
    broker = sn.Broker([sn.Rule(str(tree / "allowed"))])
    fd, _ = broker.open_for(str(tree / "allowed"), os.O_RDONLY | os.O_DIRECTORY, 0o777)
    assert fd >= 0
    os.close(fd)
    tmp = broker.open_for(str(tree / "allowed"), os.O_RDWR | os.O_TMPFILE, 0o600)
    assert tmp[0] == -errno.EACCES
    writable = sn.Broker([sn.Rule(str(tree / "allowed"), write=True)])
    fd, _ = writable.open_for(str(tree / "allowed"), os.O_RDWR | os.O_TMPFILE, 0o600)
    assert fd >= 0
    os.close(fd)


def test_a_target_past_its_timeout_is_killed(tree: Path) -> None:
    rules = [sn.Rule(p) for p in SYSTEM if os.path.exists(p)]
    code, _ = sn.run(["/bin/sleep", "30"], rules, timeout=0.5)
    assert code == 128 + 9


def test_a_missing_program_is_an_exit_status_not_a_hang(tree: Path) -> None:
    code, broker = sn.run([str(tree / "no-such-program")], [], timeout=30)
    assert code == 126 and broker.decisions == []


def test_the_rule_of_where_a_path_leads_decides(tmp_path: Path) -> None:
    """A read-only rule inside a writable one was written through ``rw/sub/../ro`` and
    through a link in ``rw`` to it: the rule was chosen by the path as spelt (a hostile
    review, 2026-12-04). A FIFO in a rule parked the supervisor's one thread."""
    rw = tmp_path / "rw"
    (rw / "sub").mkdir(parents=True)
    (rw / "ro").mkdir()
    (rw / "ro" / "secret").write_text("keep\n")
    (rw / "link").symlink_to("ro/secret")
    (rw / "dirlink").symlink_to("ro")
    os.mkfifo(rw / "fifo")
    broker = sn.Broker([sn.Rule(str(rw), write=True), sn.Rule(str(rw / "ro"))])
    for path in ("sub/../ro/secret", "link", "ro/secret"):
        fd, rule = broker.open_for(f"{rw}/{path}", os.O_WRONLY | os.O_TRUNC, 0)
        assert fd == -errno.EACCES and rule is not None and not rule.write, path
        fd, _ = broker.open_for(f"{rw}/{path}", os.O_RDONLY, 0)  # reading is granted
        assert fd >= 0
        os.close(fd)
    fd, _ = broker.open_for(f"{rw}/dirlink/new", os.O_WRONLY | os.O_CREAT, 0o644)
    assert fd == -errno.EACCES and not (rw / "ro" / "new").exists()
    assert (rw / "ro" / "secret").read_text() == "keep\n"
    for flags in (os.O_RDONLY, os.O_WRONLY, os.O_WRONLY | os.O_CREAT):
        assert broker.open_for(f"{rw}/fifo", flags, 0o644)[0] == -errno.EACCES  # at once
    fd, rule = broker.open_for(f"{rw}/sub/new", os.O_WRONLY | os.O_CREAT, 0o600)
    assert fd >= 0 and rule is not None and rule.write
    os.close(fd)


def test_a_broker_keeps_the_first_decisions_only(tree: Path) -> None:
    program = "for _ in range(400): open('allowed/hello.txt').close()"
    code, _, err, broker = _run(tree, ["/usr/bin/python3", "-S", "-c", program],
                                sn.Rule("/usr/bin"))
    assert code == 0, err
    assert len(broker.decisions) == sn.MAX_DECISIONS
