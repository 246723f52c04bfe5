"""Voice: the catalogue's English forms as a pocketsphinx grammar, and a real round trip
espeak-ng -> WAV -> pocketsphinx -> parse -> intent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exo.agents import voice
from exo.agents.intent import parse
from exo.agents.intent.forms import ENGLISH_FORMS
from exo.agents.intents import CATALOGUE

needs_audio_tools = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are installed by `make setup` (Debian packages)")


def test_every_intent_but_unknown_has_spoken_forms() -> None:
    assert set(ENGLISH_FORMS) == {s.name for s in CATALOGUE} - {"unknown"}
    grammar = voice.jsgf()
    assert grammar.startswith("#JSGF V1.0;")
    for intent in ENGLISH_FORMS:
        assert f"<cmd_{intent.replace('.', '_')}>" in grammar


def test_spoken_words_are_written_back() -> None:
    assert voice.written("kill process four two four two") == "kill process 4242"
    assert voice.written("upgrade net loop to version two point one point five") == \
        "upgrade net/loop to version 2.1.5"
    assert voice.written("find the file report dot pdf") == "find the file report.pdf"
    assert voice.written("point two") == "point 2"


def test_only_a_whole_form_is_a_command() -> None:
    assert voice.is_command("which process uses the most memory")
    assert voice.is_command("kill process one two three")
    assert not voice.is_command("which process uses the most")
    assert not voice.is_command("kill process")
    assert not voice.is_command("make me a coffee")


def test_every_form_written_back_parses_to_its_intent() -> None:
    """What the recogniser can hear, the parser understands (slots filled with one value)."""
    fill = {"<pid>": "four two", "<process>": "firefox", "<package>": "vim",
            "<module>": "net loop", "<version>": "two point one", "<file>": "notes dot text"}
    for intent, forms in ENGLISH_FORMS.items():
        for form in forms:
            text = form
            for slot, value in fill.items():
                text = text.replace(slot, value)
            text = text.replace("[", "").replace("]", "")
            assert voice.is_command(text), text
            assert parse(voice.written(text)).name == intent, text


@needs_audio_tools
@pytest.mark.parametrize(("said", "intent", "slots"), [
    ("show the memory usage", "sys.memory_usage", {}),
    ("kill process four two four two", "proc.kill", {"target": "4242"}),
    ("install firefox", "pkg.install", {"package": "firefox"}),
    ("upgrade net loop to version two point one point five", "module.upgrade",
     {"module": "net/loop", "version": "2.1.5"}),
    ("roll back the network driver", "module.rollback", {"module": "net/loop"}),
    ("which process uses the most cpu", "proc.top_cpu", {}),
    ("find the file report dot pdf", "fs.find", {"name": "report.pdf"}),
])
def test_voice_round_trip(tmp_path: Path, said: str, intent: str,
                          slots: dict[str, str]) -> None:
    wav = tmp_path / "said.wav"
    voice.synthesise(said, wav)
    heard = voice.recognise_wav(wav)
    got = parse(heard)
    assert (got.name, got.slots) == (intent, slots), heard


@needs_audio_tools
def test_noise_is_not_a_command(tmp_path: Path) -> None:
    import subprocess

    wav = tmp_path / "noise.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(wav), "synth",
                    "1.5", "whitenoise", "vol", "0.02"], check=True, capture_output=True)
    assert voice.recognise_wav(wav) == ""


def test_unreadable_audio_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave")
    with pytest.raises(voice.VoiceError, match="cannot read"):
        voice.recognise_wav(bad)
    with pytest.raises(voice.VoiceError, match="cannot read"):
        voice.recognise_wav(tmp_path / "missing.wav")


@pytest.mark.skipif(bool(voice.capture_devices()), reason="this machine has a microphone")
def test_listen_without_a_microphone_says_so() -> None:
    with pytest.raises(voice.VoiceError, match="no microphone"):
        voice.listen_once()


@pytest.mark.skipif(bool(voice.playback_devices()), reason="this machine has a loudspeaker")
def test_speak_without_a_loudspeaker_says_so() -> None:
    with pytest.raises(voice.VoiceError, match="no loudspeaker"):
        voice.speak("bonjour", "fr")


@pytest.mark.skipif(bool(voice.capture_devices()), reason="this machine has a microphone")
def test_exo_ai_voice_without_a_microphone(exo_cmd: list[str],
                                           exo_env: dict[str, str]) -> None:
    import subprocess

    out = subprocess.run([*exo_cmd, "ai", "--voice"], capture_output=True, env=exo_env,
                         timeout=60, check=False)
    assert out.returncode == 1
    assert out.stderr.decode().startswith("exo ai: no microphone")


@needs_audio_tools
def test_exo_ai_parse_wav(tmp_path: Path, exo_cmd: list[str],
                          exo_env: dict[str, str]) -> None:
    import json
    import subprocess

    wav = tmp_path / "said.wav"
    voice.synthesise("install firefox", wav)
    out = subprocess.run([*exo_cmd, "ai", "parse", "--json", "--wav", str(wav)],
                         capture_output=True, env=exo_env, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"intent": "pkg.install",
                                      "slots": {"package": "firefox"}, "confidence": 1.0}
    assert out.stderr.decode().splitlines() == ["heard: install firefox"]
