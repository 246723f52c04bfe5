"""Parsing, normalisation and coverage of resource names and rights."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exo.kernel.caps import (
    CapabilityError,
    InvalidResourceName,
    InvalidRights,
    ResourceName,
    Rights,
)

P = ResourceName.parse


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("storage://home/demo", "storage://home/demo"),
        ("storage:///home//demo/", "storage://home/demo"),
        ("storage://home/./demo/../demo/x.txt", "storage://home/demo/x.txt"),
        ("storage://", "storage://"),
        ("STORAGE://home", "storage://home"),
        ("net://example.COM:80", "net://example.com:80"),
        ("net://example.com.:80", "net://example.com:80"),
        ("net://10.0.0.1:8080", "net://10.0.0.1:8080"),
        ("net://0.0.0.0:8080", "net://0.0.0.0:8080"),
        ("net://[::1]:53", "net://[::1]:53"),
        ("net://[0:0:0:0:0:0:0:1]:53", "net://[::1]:53"),
        ("net://[::ffff:127.0.0.1]:80", "net://127.0.0.1:80"),
        ("net://host:*", "net://host:*"),
        ("net://loopback", "net://loopback"),
        ("net://LOOPBACK:*", "net://loopback"),
        ("net://loopback:8080", "net://loopback:8080"),
        ("net://*", "net://*"),
        ("net://*:443", "net://*:443"),
        ("ipc://ai-res", "ipc://ai-res"),
        ("ipc://*", "ipc://*"),
        ("module://net/loop", "module://net/loop"),
        ("agent://ai-res", "agent://ai-res"),
        ("device://serial0", "device://serial0"),
        ("process://42", "process://42"),
        ("process://*", "process://*"),
    ],
)
def test_valid_names_normalise(text: str, canonical: str) -> None:
    name = P(text)
    assert str(name) == canonical
    assert P(str(name)) == name  # canonical form is a fixed point


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ftp://x", "unknown scheme"),
        ("home/demo", "not a URL"),
        ("", "not a URL"),
        ("storage://..", "escapes the root"),
        ("storage://home/../../etc", "escapes the root"),
        ("storage://home/\x00x", "NUL"),
        ("storage://a\nb", "control"),
        ("net://host", "needs a port"),
        ("net://host:99999", "out of range"),
        ("net://host:http", "not a number"),
        ("net://:80", "empty host"),
        ("net://::1:80", "brackets"),
        ("net://[::1:80", "missing ']'"),
        ("net://[1.2.3.4]:80", "only IPv6"),
        ("net://[zz]:80", "not a valid IP"),
        ("net://999.1.1.1:80", "not a valid IP"),
        ("net://bad_host:80", "not a valid host"),
        ("net://-a.com:80", "not a valid host"),
        ("ipc://", "empty component"),
        ("ipc://a//b", "empty component"),
        ("ipc://a/../b", "bad component"),
        ("ipc://a b", "bad component"),
        ("module://net/", "empty component"),
        ("process://0", "process://PID"),
        ("process://-1", "process://PID"),
        ("process://abc", "process://PID"),
        ("x" * 5000, "longer than"),
    ],
)
def test_malformed_names_refused_clearly(text: str, fragment: str) -> None:
    with pytest.raises(InvalidResourceName) as info:
        P(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert isinstance(info.value, CapabilityError)


def test_non_string_name_refused() -> None:
    with pytest.raises(InvalidResourceName, match="must be a string"):
        P(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("storage://home/demo", "storage://home/demo/docs/x.txt", True),
        ("storage://home/demo", "storage://home/demo", True),
        ("storage://home/demo", "storage://home/demonstration", False),
        ("storage://home/demo/x", "storage://home/demo", False),
        ("storage://", "storage://etc/passwd", True),
        ("storage://home", "ipc://home", False),
        ("net://*", "net://example.com:80", True),
        ("net://*", "net://[::1]:1", True),
        ("net://*:443", "net://example.com:443", True),
        ("net://*:443", "net://example.com:80", False),
        ("net://loopback", "net://127.0.0.1:80", True),
        ("net://loopback", "net://127.8.9.10:1", True),
        ("net://loopback", "net://[::1]:22", True),
        ("net://loopback", "net://[::ffff:127.0.0.1]:22", True),
        ("net://loopback", "net://localhost:22", True),
        ("net://loopback", "net://10.0.0.1:80", False),
        ("net://loopback", "net://*", False),
        ("net://loopback:80", "net://127.0.0.1:80", True),
        ("net://loopback:80", "net://127.0.0.1:81", False),
        ("net://host:*", "net://host:22", True),
        ("net://host:*", "net://other:22", False),
        ("net://host:22", "net://host:*", False),
        ("net://host:22", "net://host:22", True),
        ("net://127.0.0.1:80", "net://loopback", False),
        ("ipc://*", "ipc://ai-res", True),
        ("ipc://ai", "ipc://ai/res", True),
        ("ipc://ai", "ipc://ai-res", False),
        ("ipc://ai-res", "ipc://*", False),
        ("module://net", "module://net/loop", True),
        ("process://*", "process://7", True),
        ("process://7", "process://70", False),
    ],
)
def test_covers(outer: str, inner: str, expected: bool) -> None:
    assert P(outer).covers(P(inner)) is expected


def test_fs_path_maps_under_root(tmp_path: Path) -> None:
    assert P("storage://home/demo").fs_path(tmp_path) == tmp_path / "home" / "demo"
    assert P("storage://").fs_path(tmp_path) == tmp_path
    with pytest.raises(InvalidResourceName):
        P("ipc://x").fs_path(tmp_path)


_component = st.sampled_from(["a", "b", "..", ".", "", "c.txt", "%2e%2e", "*"])


@given(st.lists(_component, max_size=12))
def test_storage_paths_never_escape(parts: list[str]) -> None:
    """Any storage name either fails to parse or maps strictly inside the root."""
    text = "storage://" + "/".join(parts)
    try:
        name = P(text)
    except InvalidResourceName:
        return
    comps = name.path.split("/") if name.path else []
    assert all(c not in ("", ".", "..") for c in comps)
    root = Path("/exo-root")
    assert P("storage://").covers(name)
    assert name.fs_path(root).is_relative_to(root)


def test_rights_parse_and_format() -> None:
    assert Rights.parse("read,WRITE") == Rights.READ | Rights.WRITE
    assert Rights.parse(" Read | send + recv ") == Rights.READ | Rights.SEND | Rights.RECV
    assert Rights.parse("") == Rights.NONE
    assert Rights.parse("ALL") == Rights.all()
    assert Rights.parse(Rights.GRANT) == Rights.GRANT
    assert Rights.all().format() == (
        "READ,WRITE,EXECUTE,SEND,RECV,DUPLICATE,TRANSFER,GRANT"
    )
    assert Rights.NONE.format() == "NONE"
    assert str(Rights.READ | Rights.EXECUTE) == "READ,EXECUTE"
    for r in Rights.all():
        assert Rights.parse(r.format()) == r


@pytest.mark.parametrize("bad", ["READ,FLY", "root", 1 << 12, -1, 3.5, True])
def test_rights_unknown_refused(bad: object) -> None:
    with pytest.raises(InvalidRights):
        Rights.parse(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=255))
def test_rights_roundtrip(value: int) -> None:
    r = Rights(value)
    assert Rights.parse(r.format()) == r
