"""The ``[posix_x]`` manifest table and what it becomes in the sandbox spec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exo.kernel.manifest import ManifestError, PosixX, load_manifest, parse_grant
from exo.posix_x.sandbox import apply, exec_allowed, resolve
from exo.sandbox import SandboxError, SandboxSpec
from exo.sandbox.namespace import ETC_NEVER, check_host_etc

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "posix-x"



def test_the_table_and_its_network_ports(tmp_path: Path) -> None:
    m = load_manifest(_write(tmp_path, '[sandbox]\ncapabilities = ["storage://var/lib/x=READ"]\n'
                                       '[posix_x]\nfork = true\nexec = ["/bin/sh"]\n'
                                       'network = [6379]\netc = ["/etc/nginx/mime.types"]\n'
                                       'passthrough = true\nuser = "postgres"\n'))
    assert m.posix_x == PosixX(fork=True, exec=("/bin/sh",), etc=("/etc/nginx/mime.types",),
                               passthrough=True, user="postgres")
    assert parse_grant("net://loopback:6379=SEND,RECV") in m.grants


def test_without_the_table_there_is_none_and_its_defaults(tmp_path: Path) -> None:
    assert load_manifest(_write(tmp_path, "[limits]\npids = 4\n")).posix_x is None
    default = load_manifest(_write(tmp_path, "[posix_x]\n")).posix_x
    assert default == PosixX()
    assert default is not None and default.system_dirs and not default.fork
    assert default.exec == ()


@pytest.mark.parametrize(("text", "field"), [
    ("[posix_x]\nforks = true\n", "forks"),
    ("[posix_x]\nfork = 1\n", "posix_x.fork"),
    ("[posix_x]\nnetwork = [70000]\n", "posix_x.network"),
    ('[posix_x]\nexec = ["sh"]\n', "posix_x.exec"),
    ('[posix_x]\nexec = ["/root/tool"]\n', "storage://…=EXECUTE"),
    ('[posix_x]\netc = ["/usr/lib"]\n', "posix_x.etc"),
    ('[posix_x]\netc = ["/etc/shadow"]\n', "posix_x.etc: /etc/shadow: /etc/shadow is never shown"),
    ('[posix_x]\nuser = "a b"\n', "posix_x.user"),
])
def test_bad_tables_are_one_line_naming_the_field(tmp_path: Path, text: str,
                                                  field: str) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(_write(tmp_path, text))
    assert field in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["redis", "nginx", "postgres"])
def test_the_examples_load(name: str) -> None:
    m = load_manifest(EXAMPLES / f"{name}.toml")
    assert m.posix_x is not None and m.posix_x.passthrough
    assert any(g.name.scheme == "net" for g in m.grants)


@pytest.mark.parametrize("path", [*ETC_NEVER, "/etc", "/etc/ssl", "/etc/ssl/private/x.key",
                                  "/etc/ssh/sshd_config", "/root/.bashrc", "/usr/bin",
                                  "/etc/app/.ssh/id_rsa", "/etc/shadow/../shadow"])
def test_secrets_are_never_shown(path: str) -> None:
    with pytest.raises(SandboxError):
        check_host_etc(path)


def test_ordinary_config_is_shown() -> None:
    assert check_host_etc("/etc/nginx/mime.types") == "/etc/nginx/mime.types"
    assert check_host_etc("/etc/alternatives") == "/etc/alternatives"


def test_exec_policy_lists_the_program_its_loader_and_interpreters(tmp_path: Path) -> None:
    assert exec_allowed(True, "/bin/sh") is None
    loader = Path(os.path.realpath("/lib64/ld-linux-x86-64.so.2"))
    allowed = exec_allowed(("/usr/bin/env",), "true")
    assert allowed is not None
    assert Path(os.path.realpath(resolve("true"))) in allowed and loader in allowed
    assert Path(os.path.realpath("/usr/bin/env")) in allowed
    # A program reached through a link (python3 -> python3.11) still gets its loader.
    via_link = exec_allowed((), "/usr/bin/python3")
    assert via_link is not None and loader in via_link
    # A script of the Exo tree: its own EXECUTE right governs it; its interpreter is added.
    (tmp_path / "home").mkdir()
    (tmp_path / "home/run.sh").write_text("#!/usr/bin/env python3\n")
    allowed = exec_allowed((), "/home/run.sh", tmp_path)
    assert allowed is not None
    assert Path(os.path.realpath(resolve("python3"))) in allowed
    with pytest.raises(SandboxError, match="no such program"):
        exec_allowed((), "no-such-program-anywhere")
    with pytest.raises(SandboxError, match="only programs of the system directories"):
        exec_allowed(("/home/dev/tool",), "true")


def test_apply_sets_the_spec() -> None:
    spec = apply(SandboxSpec(), PosixX(fork=False, etc=("/etc/nginx/mime.types",),
                                       user="nobody-here"), ["true"])
    assert not spec.fork and spec.user == ("nobody-here", 1000)
    assert Path("/etc/nginx/mime.types") in spec.host_etc
    assert Path("/etc/alternatives") in spec.host_etc
    with pytest.raises(SandboxError, match="never shown"):
        apply(SandboxSpec(), PosixX(etc=("/etc/gshadow",)), ["true"])



def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "app.toml"
    path.write_text(text)
    return path


def test_what_an_etc_name_leads_to_is_checked_too() -> None:
    from exo.sandbox.namespace import host_etc_source

    assert host_etc_source("/etc/alternatives") == "/etc/alternatives"
    if os.path.islink("/etc/os-release"):  # a link into the system directories is fine
        assert host_etc_source("/etc/os-release").startswith("/usr/")
    if os.path.islink("/etc/mtab"):  # one to /proc is not
        with pytest.raises(SandboxError, match="outside /etc and the system directories"):
            host_etc_source("/etc/mtab")


def test_an_etc_directory_holding_a_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from exo.sandbox import namespace

    monkeypatch.setattr(os, "walk", lambda top: iter([(top, ["ssl"], ["server.key"])]))
    with pytest.raises(SandboxError, match=r"server\.key, which is never shown"):
        namespace.host_etc_source("/etc/alternatives")
