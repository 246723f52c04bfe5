"""``exo install``, ``exo module ...`` and the other administration commands typed at the
Exo prompt (DESIGN.md §1) run the host's ``exo`` against this kernel's root, for the
administrator only."""

from __future__ import annotations

import click
import pytest
from tests.unit.shell._support import run

from exo.cli.commands import main as cli_main
from exo.shell import Shell
from exo.shell.builtins import ADMIN_SUBCOMMANDS


def test_every_forwarded_subcommand_is_a_host_command() -> None:
    assert isinstance(cli_main, click.Group)
    assert set(cli_main.commands) >= ADMIN_SUBCOMMANDS, \
        ADMIN_SUBCOMMANDS - set(cli_main.commands)


def test_the_administrator_runs_package_commands_on_this_root(root_shell: Shell) -> None:
    status, out, err = run(root_shell, "exo list")
    assert (status, out) == (0, ""), err  # nothing installed on this root
    status, out, err = run(root_shell, "exo crypto selftest")
    assert status == 0, err
    assert "[ok  ] ML-KEM-768 (FIPS 203 KAT)" in out
    status, out, err = run(root_shell, "exo install no-such-package -y")
    assert status != 0
    assert err == "exo: no repository configured (exo repo add NAME DIR|URL)\n", err


def test_a_user_is_refused_in_one_line(alice: Shell) -> None:
    status, out, err = run(alice, "exo install nginx")
    assert status != 0 and out == ""
    assert err.strip().splitlines() == [
        "exo: install: permission denied: only the administrator runs 'exo install' "
        "(user alice)"], err


def test_ai_voice_says_when_there_is_no_microphone(root_shell: Shell) -> None:
    from exo.agents.voice import capture_devices

    if capture_devices():
        pytest.skip("this machine has a microphone: listening would wait for speech")
    status, out, err = run(root_shell, "ai --voice")
    assert (status, out) == (1, "")
    assert err.startswith("ai: no microphone"), err


def test_administrator_commands_run_in_the_shells_directory(root_shell: Shell) -> None:
    """``cd /tmp; exo new hello`` made hello/ in the kernel's host directory."""
    status, _, err = run(root_shell, "cd /tmp; exo new hello --template cli")
    assert status == 0, err
    assert (root_shell.kernel.root / "tmp" / "hello" / "exopkg.toml").is_file()
