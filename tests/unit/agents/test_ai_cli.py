"""``exo ai parse`` and ``exo ai`` as a script or a user runs them: real subprocesses of
the ``exo`` command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest


def run(exo_cmd: list[str], exo_env: dict[str, str], *args: str,
        stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*exo_cmd, "ai", *args], input=stdin, capture_output=True,
                          env=exo_env, timeout=120, check=False)


def test_parse_json_prints_the_contract(exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    out = run(exo_cmd, exo_env, "parse", "--json", "mets à jour le pilote réseau en 2.1.5")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert list(got) == ["intent", "slots", "confidence"]
    assert got["intent"] == "module.upgrade"
    assert got["slots"] == {"module": "net/loop", "version": "2.1.5"}
    assert 0.0 < got["confidence"] <= 1.0


def test_parse_exact_command_has_full_confidence(exo_cmd: list[str],
                                                 exo_env: dict[str, str]) -> None:
    out = run(exo_cmd, exo_env, "parse", "--json", "kill", "4242")  # words joined
    assert json.loads(out.stdout) == {"intent": "proc.kill", "slots": {"target": "4242"},
                                      "confidence": 1.0}


def test_parse_stdin_one_object_per_line_in_order(exo_cmd: list[str],
                                                  exo_env: dict[str, str]) -> None:
    lines = ["installe nginx", "what's the weather in Paris", "how much ram is free",
             "révoque net://0.0.0.0:8080 de nginx"]
    out = run(exo_cmd, exo_env, "parse", "--json", "--stdin",
              stdin=("\n".join(lines) + "\n").encode())
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert [g["intent"] for g in got] == ["pkg.install", "unknown", "sys.memory_usage",
                                          "cap.revoke"]
    assert got[0]["slots"] == {"package": "nginx"}
    assert got[3]["slots"] == {"target": "nginx", "capability": "net://0.0.0.0:8080"}


def test_stdin_bad_lines_keep_the_output_aligned(exo_cmd: list[str],
                                                 exo_env: dict[str, str]) -> None:
    data = b"kill 1\n\n\xff\xfe bad\n" + b"y" * 5000 + b"\nhelp\n"
    out = run(exo_cmd, exo_env, "parse", "--json", "--stdin", stdin=data)
    assert out.returncode == 1
    got = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert len(got) == 5
    assert got[0]["intent"] == "proc.kill"
    assert got[1] == {"error": "empty sentence"}
    assert got[2] == {"error": "not UTF-8 text"}
    assert "too long" in got[3]["error"]
    assert got[4]["intent"] == "help"
    errors = out.stderr.decode().splitlines()
    assert errors == ["exo ai: line 2: empty sentence", "exo ai: line 3: not UTF-8 text",
                      "exo ai: line 4: sentence too long (over 1000 characters)"]


@pytest.mark.parametrize(("args", "message"), [
    (("parse", "--json", ""), "exo ai: empty sentence"),
    (("parse", "--json", "a" * 1001), "exo ai: sentence too long (1001 characters, at most "
                                       "1000)"),
    (("parse", "--json"), "exo ai: give a sentence to parse (or --stdin, or --wav FILE)"),
    (("parse", "--stdin", "kill 1"), "exo ai: give one of a sentence, --stdin or --wav"),
    (("parse", "--wav", "/nonexistent/said.wav"),
     "exo ai: cannot read /nonexistent/said.wav: No such file or directory"),
])
def test_bad_input_is_one_line_and_exit_1(exo_cmd: list[str], exo_env: dict[str, str],
                                          args: tuple[str, ...], message: str) -> None:
    out = run(exo_cmd, exo_env, *args, stdin=b"")
    assert out.returncode == 1
    assert out.stdout == b""
    assert out.stderr.decode().splitlines() == [message]


def test_parse_without_json_is_one_readable_line(exo_cmd: list[str],
                                                 exo_env: dict[str, str]) -> None:
    out = run(exo_cmd, exo_env, "parse", "installe le paquet [bold]nginx")
    assert out.returncode == 0
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("pkg.install")
    assert "confidence" in lines[0] and "(fr)" in lines[0]


def test_bare_ai_answers_in_the_language_asked(exo_cmd: list[str],
                                              exo_env: dict[str, str]) -> None:
    out = run(exo_cmd, exo_env, "Quel est l'usage CPU ?")
    assert out.returncode == 0, out.stderr
    line = out.stdout.decode().strip()
    assert line.startswith("[AI-Res] Utilisation CPU :") and "cœurs" in line, line
    out = run(exo_cmd, exo_env, "--json", "how much memory is used")
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert (reply["agent"], reply["intent"], reply["lang"], reply["ok"]) == \
        ("AI-Res", "sys.memory_usage", "en", True)


def test_bare_ai_does_not_kill_without_confirmation(exo_cmd: list[str],
                                                    exo_env: dict[str, str]) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        out = run(exo_cmd, exo_env, f"kill {victim.pid}", stdin=b"")
        assert out.returncode == 1
        assert "not confirmed (no terminal; pass --yes)" in out.stderr.decode()
        assert victim.poll() is None  # still running
    finally:
        victim.kill()
        victim.wait()


def test_bare_ai_checks_the_sentence_first(exo_cmd: list[str],
                                           exo_env: dict[str, str]) -> None:
    out = run(exo_cmd, exo_env, "x" * 1001)
    assert out.returncode == 1
    assert "too long" in out.stderr.decode()


def test_on_a_terminal_a_question_asked_back_takes_the_reply(
        exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(exo_cmd[0], [*exo_cmd[1:], "ai", "anything heavy on the cpu?"],
                          env=exo_env, encoding="utf-8", timeout=60)
    try:
        child.expect(r"\[Assistant\] Did you mean: (.+)\? Answer 1 or 2\.")
        choices = child.match.group(1).split(", or ")
        child.expect("exo ai: ")
        child.sendline(str(choices.index("the CPU usage") + 1))
        child.expect(r"\[AI-Res\] CPU usage: \d+% \(avg\), cores: \[")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_without_a_terminal_the_question_is_printed_and_nothing_done(
        exo_cmd: list[str], exo_env: dict[str, str]) -> None:
    out = run(exo_cmd, exo_env, "--json", "processeur")
    reply = json.loads(out.stdout)
    assert out.returncode == 0 and reply["question"] and not reply["done"]
    assert reply["text"].startswith("Vouliez-vous dire : ") and len(reply["choices"]) == 2


def test_the_answer_is_spoken_in_the_language_asked(exo_cmd: list[str],
                                                     exo_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    from exo.agents.voice import playback_devices

    wav = tmp_path / "answer.wav"
    out = run(exo_cmd, exo_env, "--speak-to", str(wav), "Quel est l'usage CPU ?")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().startswith("[AI-Res] Utilisation CPU :")
    data = wav.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 20_000
    if not playback_devices():  # this machine: no loudspeaker, and it says so
        out = run(exo_cmd, exo_env, "--speak", "how much memory is used")
        assert out.returncode == 1
        assert out.stdout.decode().startswith("[AI-Res] Memory:")
        assert out.stderr.decode().startswith("exo ai: no loudspeaker"), out.stderr
