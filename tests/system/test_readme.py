"""Every example in README.md runs as written.

The examples are taken from the README itself (not copied here), so a README edit that
breaks one fails this test: the script-mode console lines, the first session's shell
commands, the manifest, and the two ``exo_std`` programs (run as sandboxed apps with the
capabilities the text says they need). The first session is also a golden transcript:
typed at a pseudo-terminal, the screen must be the README's, line for line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
EXO = [sys.executable, "-m", "exo"]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


def _console_lines() -> list[str]:
    return [line[2:] for block in _blocks("console") for line in block.splitlines()
            if line.startswith("$ ")]


def test_script_mode_examples(exo_env: dict[str, str]) -> None:
    lines = [c for c in _console_lines() if "| .venv/bin/exo boot" in c
             or c.startswith(".venv/bin/exo boot")]
    assert len(lines) == 3, lines
    outputs = {}
    for line in lines:
        cmd = line.split("#")[0].replace(".venv/bin/exo", f"{sys.executable} -m exo")
        r = subprocess.run(cmd, shell=True, env=exo_env, text=True, capture_output=True,
                           timeout=60)
        assert r.returncode == 0, (line, r.stderr)
        outputs[line] = r.stdout
    first, quiet, json_boot = outputs.values()
    tree = {"bin", "dev", "etc", "exo", "home", "lib", "proc", "sys", "tmp", "usr", "var"}
    assert tree <= set(first.split()) and "hello" in first
    assert quiet == "hello\n"
    assert '"boot_ms"' in json_boot


def test_the_first_session(exo_env: dict[str, str]) -> None:
    """The shell commands of "A first session", fed to the shell in script mode."""
    session = next(b for b in _blocks("console") if "exo-os login: root" in b)
    commands = [line.split("# ", 1)[1] for line in session.splitlines()
                if line.startswith("exo-os:~# ")]
    assert commands[-1] == "exo shutdown"
    script = "\n".join(commands[:-1]) + "\n"
    r = subprocess.run([*EXO, "boot", "--quiet"], input=script, env=exo_env, text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "hi from a sandbox" in r.stdout
    tree = {"bin", "dev", "etc", "exo", "home", "lib", "proc", "sys", "tmp", "usr", "var"}
    assert tree <= set(r.stdout.split())


def test_the_manifest_example(tmp_path: Path) -> None:
    from exo.kernel.manifest import load_manifest

    (toml,) = [b for b in _blocks("toml") if "[sandbox]" in b]
    path = tmp_path / "app.toml"
    path.write_text(toml)
    manifest = load_manifest(path)
    assert [str(g.name) for g in manifest.grants] == ["storage://home/demo",
                                                     "net://loopback:8080"]
    assert manifest.limits.memory == 256 << 20 and manifest.limits.pids == 64


WORKER = """
import sys
from exo_std import ipc
endpoints = ipc.inherited()
if endpoints:
    (ep,) = endpoints
    data, caps = ep.recv(timeout=5)
    ep.send(b"done: " + bytes(data), [])
"""


@pytest.mark.parametrize("index", [0, 1])
def test_the_python_examples(index: int, exo_root: Path, exo_env: dict[str, str]) -> None:
    program = _blocks("python")[index]
    demo = exo_root / "home" / "demo"
    (demo / "docs").mkdir(parents=True)
    (demo / "notes").mkdir()
    (demo / "worker.py").write_text(WORKER)
    (demo / "example.py").write_text(program + "\nprint('example finished')\n")
    r = subprocess.run([*EXO, "run", "--cap",
                        "storage://home/demo=READ,WRITE,EXECUTE,GRANT,DUPLICATE,TRANSFER",
                        "--cwd", "/home/demo", "--", "/usr/bin/python3", "example.py"],
                       env=exo_env, text=True, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "example finished" in r.stdout
    if index == 0:
        assert (demo / "notes.txt").read_text() == "kept through a capability"


def test_the_fuzzers_run(tmp_path: Path) -> None:
    """The README's fuzzer lines, each for a few hundred inputs (a full session is a
    million and runs outside the test suite)."""
    lines = [c for c in _console_lines() if c.startswith(".venv/bin/python fuzz/")]
    assert len(lines) == 2, lines
    for line in lines:
        script = line.split("#")[0].split()[1]
        r = subprocess.run([sys.executable, script, "--runs", "300"], text=True,
                           capture_output=True, timeout=300,
                           cwd=README.parent)
        assert r.returncode == 0, (line, r.stdout[-2000:], r.stderr[-2000:])


def test_the_grants_example(exo_root: Path) -> None:
    """The administrator's policy in "Living in the shell" grants what the text says."""
    from exo.kernel.tree import ensure_tree
    from exo.kernel.users import GRANTS_FILE, UserDatabase, session_grants

    (policy,) = [b for b in _blocks("toml") if "[users.alice]" in b]
    ensure_tree(exo_root)
    (exo_root / GRANTS_FILE).parent.mkdir(parents=True, exist_ok=True)
    (exo_root / GRANTS_FILE).write_text(policy)
    db = UserDatabase(exo_root)
    alice, bob = db.add("alice", "a"), db.add("bob", "b")
    alice_set = {str(g) for g in session_grants(exo_root, alice) or []}
    bob_set = {str(g) for g in session_grants(exo_root, bob) or []}
    assert {"storage://home/shared=READ,WRITE", "device://power=WRITE"} <= alice_set
    assert "storage://home/shared=READ" in bob_set
    assert not any(g.startswith("device://") for g in bob_set)


# ------------------------------------------------------------- the golden transcript
ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>])")
PROMPT = r"exo-os:[^\r\n#]*#"
#: Where the README's session lives: the default EXO_ROOT of root.
README_ROOT = "/root/.local/share/exo"


def _mask(text: str) -> str:
    """What may differ between runs and hosts: timings, the time of day, how many CPUs,
    the Landlock ABI and cgroup version the host offers."""
    text = re.sub(r"\b\d+(\.\d+)? ms\b", "<t> ms", text)
    text = re.sub(r"\b\d\d:\d\d:\d\d\b", "<hh:mm:ss>", text)
    text = re.sub(r"\b\d+ CPUs?\b", "<n> CPUs", text)
    text = re.sub(r"Landlock ABI \d+", "Landlock ABI <n>", text)
    return re.sub(r"cgroup v\d( \([^)]*\))?", "cgroup <version>", text)


def _screen(raw: str) -> list[str]:
    """What a terminal shows of ``raw`` line by line (escape sequences and the line
    editor's redraws dropped, trailing blanks trimmed)."""
    text = ANSI.sub("", raw).replace("\r\r\n", "\n").replace("\r\n", "\n")
    return [line.split("\r")[-1].rstrip() for line in text.split("\n")]


def _first_session() -> list[str]:
    return next(b for b in _blocks("console") if "exo-os login: root" in b).splitlines()


def replay_first_session(env: dict[str, str], root: Path) -> list[str]:
    """Type the README's first session into ``exo boot`` on a pseudo-terminal, as a
    person would; what the terminal showed, as the README writes it."""
    import pexpect

    expected = _first_session()
    assert expected[0] == "$ make run"
    commands = [line.split("# ", 1)[1] for line in expected if line.startswith("exo-os:~# ")]
    env = dict(env, TERM="xterm", COLUMNS="120", LINES="40", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(sys.executable, ["-m", "exo", "boot"], env=env, encoding="utf-8",
                          timeout=60, dimensions=(40, 120))
    try:
        shown = ["$ make run"]
        child.expect("exo-os login: ")
        shown += [*_screen(child.before)[:-1], "exo-os login: root"]
        child.sendline("root")
        child.expect_exact("root\r\n")
        child.expect(PROMPT)
        shown += [line for line in _screen(child.before) if line]
        for command in commands:
            child.sendline(command)
            child.expect_exact("\r\n")  # the line editor accepted it
            if command == "exo shutdown":
                child.expect(pexpect.EOF)
            else:
                child.expect(PROMPT)
            shown.append(f"exo-os:~# {command}")
            shown += [line for line in _screen(child.before) if line]
        child.close()
        assert child.exitstatus == 0
    finally:
        if child.isalive():
            child.terminate(force=True)
    return [line.replace(str(root), README_ROOT) for line in shown]


def test_the_first_session_is_a_golden_transcript(exo_root: Path,
                                                  exo_env: dict[str, str]) -> None:
    """The README's first session, typed at a terminal: the screen is the README's,
    line for line (timings, the time of day and the host's sandbox versions masked)."""
    shown = replay_first_session(exo_env, exo_root)
    expected = _first_session()
    assert [_mask(line) for line in shown] == [_mask(line) for line in expected], (
        "README.md's first session differs from what the system shows; it showed:\n"
        + "\n".join(shown))
