"""``etc/modules/policy.toml``: parsed strictly, a mistake refuses loads with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from exo.modules import ModuleError
from exo.modules.policy import DEFAULT_MEMORY, load_policy, policy_path


def write(root: Path, text: str | bytes) -> None:
    path = policy_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)


def test_no_file_allows_every_module_with_its_own_names(tmp_path: Path) -> None:
    policy = load_policy(tmp_path)
    assert policy.allows("anything") and policy.extra("anything") == ()
    assert policy.memory == DEFAULT_MEMORY


def test_allow_patterns_grants_and_memory(tmp_path: Path) -> None:
    write(tmp_path, 'allow = ["echo", "net-*"]\n[grants]\necho = ["storage://srv"]\n'
                    "[limits]\nmemory = 1048576\n")
    policy = load_policy(tmp_path)
    assert policy.allows("echo") and policy.allows("net-loop")
    assert not policy.allows("serial-pty") and not policy.allows("echo2")
    assert policy.extra("echo") == ("storage://srv",) and policy.extra("net-loop") == ()
    assert policy.memory == 1 << 20


def test_an_empty_allow_list_allows_nothing(tmp_path: Path) -> None:
    write(tmp_path, "allow = []\n")
    assert not load_policy(tmp_path).allows("echo")


@pytest.mark.parametrize(("text", "message"), [
    ("allow = [", "not valid TOML"),
    (b"\xff\xfe", "not valid TOML"),
    ("allowed = []", "unknown key 'allowed'"),
    ("allow = 'echo'", "allow must be a list"),
    ("allow = [1]", "allow must be a list"),
    ("grants = 3", "[grants] maps a module name"),
    ("[grants]\necho = 'storage://x'", "[grants] maps a module name"),
    ("[limits]\nmemory = -1", "memory must be a positive"),
    ("[limits]\nmemory = true", "memory must be a positive"),
    ("x" * (2 << 20), "larger than"),
])
def test_a_malformed_policy_is_one_line(tmp_path: Path, text: str | bytes,
                                        message: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ModuleError) as info:
        load_policy(tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("etc/modules/policy.toml: ")
