"""Process manifests: what is accepted, and the one-line error for what is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from exo.kernel.manifest import (
    DEFAULT_MEMORY,
    DEFAULT_PIDS,
    Limits,
    Manifest,
    ManifestError,
    load_manifest,
    parse_grant,
)


def _load(tmp_path: Path, text: str) -> Manifest:
    path = tmp_path / "app.toml"
    path.write_text(text)
    return load_manifest(path)


def test_a_full_manifest(tmp_path: Path) -> None:
    m = _load(tmp_path, '[package]\nname = "demo"\n'
                        '[sandbox]\ncapabilities = ["storage://home/demo=READ,WRITE"]\n'
                        'network = ["net://loopback:8080=SEND,RECV"]\n'
                        '[limits]\nmemory = "128M"\npids = 16\ncpu = 1\n')
    assert m.grants == (parse_grant("storage://home/demo=READ,WRITE"),
                        parse_grant("net://loopback:8080=SEND,RECV"))
    assert m.limits == Limits(128 << 20, 16, 1.0)


def test_an_empty_manifest_has_the_defaults(tmp_path: Path) -> None:
    m = _load(tmp_path, "")
    assert m.grants == ()
    assert m.limits == Limits(DEFAULT_MEMORY, DEFAULT_PIDS, None)


@pytest.mark.parametrize(("text", "message"), [
    ("[limits]\npids = -1", "limits.pids: Expected `int` >= 1"),
    ("[limits]\npids = true", "limits.pids: Expected `int`, got `bool`"),
    ("[limits]\ncpu = 0.001", "limits.cpu: Expected `float` >= 0.01"),
    ("[limits]\nmemory = \"lots\"", "limits.memory: expected a size like 268435456 or \"256M\""),
    ("[sandbox]\nfoo = 1", "sandbox: Object contains unknown field `foo`"),
    ("[weird]\nx = 1", "Object contains unknown field `weird`"),
    ("[sandbox]\ncapabilities = \"x\"", "sandbox.capabilities: Expected `array`, got `str`"),
    ("[sandbox]\ncapabilities = [\"bogus://x=READ\"]",
     "sandbox.capabilities: capability 'bogus://x=READ': unknown scheme 'bogus'"),
    ("[sandbox]\nipc = [\"ipc://x\"]", "sandbox.ipc: capability 'ipc://x': expected NAME=RIGHTS"),
    ("sandbox = 3", "sandbox: Expected `object`, got `int`"),
    ("not = = toml", "invalid TOML"),
])
def test_bad_manifests_get_one_line_naming_file_and_field(tmp_path: Path, text: str,
                                                          message: str) -> None:
    with pytest.raises(ManifestError) as info:
        _load(tmp_path, text)
    error = str(info.value)
    assert error.startswith(f"{tmp_path / 'app.toml'}: ") and message in error, error
    assert "\n" not in error


def test_a_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such manifest"):
        load_manifest(tmp_path / "nope.toml")


def test_quotas_in_limits(tmp_path: Path) -> None:
    from exo.kernel.quota import DEFAULTS, Quotas

    m = _load(tmp_path, "[limits]\nchildren = 0\nhandles = 100\ninbox = 8\n")
    assert m.limits.quotas == Quotas(children=0, handles=100, inbox=8)
    assert m.limits.quotas.received == DEFAULTS["received"]
    with pytest.raises(ManifestError, match=r"limits: quota 'inbox' must be an integer in "
                                            r"0\.\.4096, got 100000"):
        _load(tmp_path, "[limits]\ninbox = 100000\n")
    with pytest.raises(ManifestError, match=r"limits\.handles: Expected `int` >= 1"):
        _load(tmp_path, "[limits]\nhandles = 0\n")


def test_a_child_never_gets_more_than_its_parent() -> None:
    from exo.kernel.quota import Quotas

    parent = Limits(32 << 20, 4, 0.5, Quotas(children=2, inbox=8))
    child = Limits(1 << 30, 256, None, Quotas(children=16, handles=10)).within(parent)
    assert child == Limits(32 << 20, 4, 0.5, Quotas(children=2, handles=10, inbox=8))
    # Unlimited only where the parent is unlimited.
    assert Limits(None, None, 0.25).within(Limits(None, None, None)).cpu == 0.25
    assert Limits(None, None, None).within(parent).memory == 32 << 20


def test_limits_asked_for_a_child_over_a_syscall() -> None:
    parent = Limits(64 << 20, 8, None)
    asked = Limits.from_request({"memory": "16M", "children": 1}, parent)
    assert (asked.memory, asked.pids, asked.quotas.children) == (16 << 20, 8, 1)
    for bad, message in [({"pids": 0}, "limits.pids"), ({"fly": 1}, "unknown field"),
                         ({"cpu": "x"}, "limits.cpu"), ({"inbox": -1}, "quota 'inbox'"),
                         ([], "must be an object"), ({"memory": "lots"}, "limits.memory")]:
        with pytest.raises(ManifestError, match=message):
            Limits.from_request(bad, parent)


@pytest.mark.parametrize("text, why", [
    ("process://99=READ", "READ means nothing for process:// (its rights: SEND,RECV,"
                          "DUPLICATE,TRANSFER,GRANT)"),
    ("net://loopback=READ,SEND", "READ means nothing for net://"),
    ("ipc://ai-res=EXECUTE", "EXECUTE means nothing for ipc://"),
    ("storage://home/demo=SEND", "SEND means nothing for storage://"),
    ("device://serial0=EXECUTE", "EXECUTE means nothing for device://"),
    ("storage://home/demo=", "no rights given for storage://home/demo"),
    ("storage://home/demo=NONE", "no rights given for storage://home/demo"),
])
def test_rights_a_scheme_does_not_use_are_refused(text: str, why: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_grant(text)
    assert why in str(info.value) and "\n" not in str(info.value)


def test_all_means_every_right_of_the_scheme() -> None:
    assert parse_grant("net://loopback:80=ALL").rights.format() == \
        "SEND,RECV,DUPLICATE,TRANSFER,GRANT"
    assert parse_grant("storage://home=ALL").rights.format() == \
        "READ,WRITE,EXECUTE,DUPLICATE,TRANSFER,GRANT"
