"""The Hybrid tier's mechanism: a real child's opens brokered through seccomp user notification."""

from __future__ import annotations

import errno
import os
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
