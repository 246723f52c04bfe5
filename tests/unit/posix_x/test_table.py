"""The syscall table: complete, consistent, in step with its document and today's sandbox."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from pathlib import Path

import pytest

from exo.posix_x import libc_map, table
from exo.sandbox import _seccomp

ROOT = Path(__file__).resolve().parents[3]
UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
# clone, socket, ioctl and personality: refused for some argument values only.
_ARG_RULES = {"clone", "socket", "ioctl", "personality"}


def test_every_number_appears_once_and_only_the_x86_64_gap_is_missing() -> None:
    numbers = [s.number for s in table.SYSCALLS]
    assert len(numbers) == len(set(numbers))
    expected = set(range(table.MAX_NUMBER + 1)) - set(table.UNASSIGNED)
    assert set(numbers) == expected
    assert numbers == sorted(numbers)
    assert table.MAX_NUMBER == 469  # file_setattr, the last syscall of Linux 6.18


def test_names_are_unique_and_rows_are_well_formed() -> None:
    names = [s.name for s in table.SYSCALLS]
    assert len(names) == len(set(names))
    for s in table.SYSCALLS:
        assert re.fullmatch(r"_?[a-z][a-z0-9_]*", s.name), s.name
        assert s.tier in table.TIERS
        assert s.today in ("allow", "EPERM", "ENOSYS", "args"), s
        if s.errno:
            assert hasattr(errno, s.errno), s
            assert s.tier == table.LEGACY, f"{s.name}: only legacy rows refuse"
        if s.tier == table.LEGACY:
            assert s.errno and s.note, f"{s.name}: a legacy row says what it answers and why"
        if s.tier == table.HYBRID:
            assert s.cap, f"{s.name}: a hybrid row names what would allow it"


@pytest.mark.skipif(not UNISTD.exists(), reason="no kernel headers")
def test_numbers_match_the_hosts_kernel_headers() -> None:
    text = UNISTD.read_text()
    found = dict(re.findall(r"#define __NR_(\w+) (\d+)", text))
    assert len(found) > 300
    for name, number in found.items():
        assert table.BY_NAME[name].number == int(number), name


def test_today_matches_the_sandboxs_seccomp_deny_list() -> None:
    """If the sandbox's filter changes, this table must say so."""
    denied = set(_seccomp.DENIED_SYSCALLS)
    for s in table.SYSCALLS:
        if s.name in denied:
            assert s.today == "EPERM", f"{s.name}: today's sandbox refuses it with EPERM"
        elif s.name == "clone3":
            assert s.today == "ENOSYS"
        elif s.name in _ARG_RULES:
            assert s.today == "args", s.name
        else:
            assert s.today == "allow", f"{s.name}: today's sandbox allows it"
    assert denied <= set(table.BY_NAME), denied - set(table.BY_NAME)


def test_refusals_that_differ_from_today_are_explained() -> None:
    differing = [s for s in table.SYSCALLS if table.differs_from_today(s)]
    assert {s.name for s in differing} >= {"uselib", "open_tree_attr"}
    for s in differing:
        assert "today" in s.note.lower(), f"{s.name}: the note says how today differs"


def test_the_document_is_the_generated_text() -> None:
    doc = (ROOT / "docs" / "posix-x-compatibility.md").read_text()
    assert doc == table.markdown(), "regenerate: python -m exo.posix_x.table --markdown"


def test_the_module_prints_the_document() -> None:
    out = subprocess.run([sys.executable, "-m", "exo.posix_x.table", "--markdown"],
                         capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout == table.markdown()
    bad = subprocess.run([sys.executable, "-m", "exo.posix_x.table", "--bogus"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_libc_mappings_only_name_existing_rows() -> None:
    assert len(libc_map.LIBC_SYSCALLS) >= 300
    for function, syscalls in libc_map.LIBC_SYSCALLS.items():
        assert syscalls, function
        for name in syscalls:
            assert name in table.BY_NAME, f"{function} -> {name}"
    for name in (*libc_map.STARTUP_DYNAMIC, *libc_map.STARTUP_STATIC):
        assert name in table.BY_NAME, name
    for group in (libc_map.NETWORK_FUNCTIONS, libc_map.FORK_FUNCTIONS,
                  libc_map.EXEC_FUNCTIONS, libc_map.SHELL_FUNCTIONS):
        assert group <= set(libc_map.LIBC_SYSCALLS), group - set(libc_map.LIBC_SYSCALLS)


def test_common_functions_map_as_glibc_issues_them() -> None:
    m = libc_map.LIBC_SYSCALLS
    assert m["open"] == m["fopen"] == ("openat",)
    assert m["fork"] == ("clone",)
    assert "clone3" in m["pthread_create"]
    assert m["connect"] == ("connect",)
    assert m["epoll_wait"] == ("epoll_wait",)


def test_a_duplicate_function_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        libc_map._parse("open: openat\nopen: open\n")


def test_lookup_by_name_and_number() -> None:
    assert table.lookup("openat") is table.BY_NUMBER[257]
    assert table.lookup(257) is table.lookup("257")
    assert table.lookup("no_such_call") is None
    assert table.lookup(400) is None
    assert table.BY_NAME["openat"].as_dict()["tier"] == "hybrid"
    assert sum(table.counts().values()) == len(table.SYSCALLS)
