"""Voice for the assistant: recognition with pocketsphinx against a JSGF grammar built from
the catalogue's English command forms (intent.forms), speech with espeak-ng.

Free-form recognition with pocketsphinx's language model is poor on commands
(PLATFORM-NOTES); a grammar of exactly the forms the parser understands is reliable. The
acoustic model and dictionary come inside the pocketsphinx wheel: nothing is downloaded.
Audio goes through sox (any WAV -> 16 kHz mono 16-bit, what the model expects; the
microphone through sox's ALSA input). Where there is no microphone or loudspeaker, the
functions say so with VoiceError instead of failing somewhere inside sox.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from exo.agents.intent.forms import ENGLISH_FORMS, SLOT_RULES

#: Words of the grammar missing from the English dictionary, in its phone set.
PRONUNCIATIONS: dict[str, str] = {
    "nginx": "EH N JH AH N EH K S",
    "redis": "R EH D IH S",
    "emacs": "IY M AE K S",
    "readme": "R IY D M IY",
    "jpeg": "JH EY P EH G",
}
#: Spoken words -> written form, applied to the recogniser's hypothesis before parsing.
_WRITTEN_WORDS = {"net loop": "net/loop", "block file": "block/file", " dot text": ".txt",
                  " dot pdf": ".pdf", " dot jpeg": ".jpg", " dot markdown": ".md"}
_DIGIT_WORDS = {w.strip(): str(i) for i, w in enumerate(SLOT_RULES["digit"].split("|"))}
_MAX_WAV_BYTES = 64 << 20  # a spoken command is seconds long; refuse to decode hours
_LISTEN_SECONDS = 8
_SAMPLE_RATE = 16000


class VoiceError(RuntimeError):
    """Voice input or output is impossible here; the message says why, in one line."""


def jsgf() -> str:
    """The JSGF grammar of every English command form."""
    lines = ["#JSGF V1.0;", "", "grammar exo;", ""]
    alternatives = []
    for intent, forms in ENGLISH_FORMS.items():
        rule = "cmd_" + intent.replace(".", "_")
        # forms are written in JSGF's own syntax (<rule>, [optional])
        lines.append(f"<{rule}> = " + " | ".join(f"( {f} )" for f in forms) + ";")
        alternatives.append(f"<{rule}>")
    lines.append("public <command> = " + " | ".join(alternatives) + ";")
    lines.extend(f"<{name}> = {body};" for name, body in SLOT_RULES.items())
    return "\n".join(lines) + "\n"


def _rule_regex(body: str, depth: int = 0) -> str:
    """A JSGF body of this grammar (sequences, |, [ ], ( ), <rule>, +) as a regex."""
    if depth > 8:
        raise ValueError("voice grammar nests too deep")
    out = []
    for token in re.findall(r"<\w+>\+?|\[|\]|\(|\)|\||[^\s\[\]()|<>]+", body):
        if token.startswith("<"):
            name = token.strip("<>+")
            inner = f"(?:{_rule_regex(SLOT_RULES[name], depth + 1)})"
            out.append(inner + ("+" if token.endswith("+") else ""))
        elif token == "[":
            out.append("(?:")
        elif token == "]":
            out.append(")?")
        elif token == "(":
            out.append("(?:")
        elif token == ")":
            out.append(")")
        elif token == "|":
            out.append("|")
        else:
            out.append(re.escape(token) + " ")
    return "".join(out)


@functools.cache
def _command_regex() -> re.Pattern[str]:
    forms = [_rule_regex(f) for fs in ENGLISH_FORMS.values() for f in fs]
    return re.compile("(?:" + "|".join(f"(?:{f})" for f in forms) + ")")


def is_command(hypothesis: str) -> bool:
    """Whether the words are one whole form of the grammar."""
    return _command_regex().fullmatch(" ".join(hypothesis.split()) + " ") is not None


def grammar_words() -> set[str]:
    text = " ".join(list(SLOT_RULES.values()) + [f for fs in ENGLISH_FORMS.values() for f in fs])
    text = re.sub(r"<[^>]*>|[\[\]()|+*]", " ", text)
    return set(text.split())


def written(hypothesis: str) -> str:
    """What was said, as it would be typed: "kill process four two" -> "kill process 42"."""
    out: list[str] = []
    for word in hypothesis.split():
        number = bool(out) and re.fullmatch(r"\d+(\.\d+)*\.?", out[-1]) is not None
        if word in _DIGIT_WORDS and number:
            out[-1] += _DIGIT_WORDS[word]
        elif word in _DIGIT_WORDS:
            out.append(_DIGIT_WORDS[word])
        elif word == "point" and number and not out[-1].endswith("."):
            out[-1] += "."
        else:
            out.append(word)
    text = " ".join(out)
    for spoken, typed in _WRITTEN_WORDS.items():
        text = text.replace(spoken, typed)
    return text


class Recogniser:
    """A pocketsphinx decoder with the command grammar; one utterance at a time."""

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise VoiceError("speech recognition needs pocketsphinx: pip install "
                             "pocketsphinx") from exc
        self._decoder: Any = Decoder(lm=None, loglevel="FATAL")
        for word, phones in PRONUNCIATIONS.items():
            if self._decoder.lookup_word(word) is None:
                self._decoder.add_word(word, phones, False)
        missing = sorted(w for w in grammar_words() if self._decoder.lookup_word(w) is None)
        if missing:
            raise VoiceError(f"words of the voice grammar have no pronunciation: {missing}")
        self._decoder.add_jsgf_string("exo", jsgf())
        self._decoder.activate_search("exo")
        self._lock = threading.Lock()

    def decode(self, pcm: bytes) -> str:
        """The written form of what 16 kHz mono s16le audio says ("" when nothing)."""
        with self._lock:
            self._decoder.start_utt()
            self._decoder.process_raw(pcm, full_utt=True)
            self._decoder.end_utt()
            hyp = self._decoder.hyp()
        # A grammar search that reaches no final state still returns its best partial
        # path ("which process uses the most"): only a whole form is a command.
        if hyp is None or not is_command(hyp.hypstr):
            return ""
        return written(hyp.hypstr)


@functools.cache
def recogniser() -> Recogniser:
    return Recogniser()


def _sox() -> str:
    path = shutil.which("sox")
    if path is None:
        raise VoiceError("audio conversion needs sox (Debian package sox)")
    return path


def recognise_wav(path: str | os.PathLike[str]) -> str:
    """The command spoken in a WAV file, as text ("" when none of the forms matched)."""
    wav = Path(path)
    try:
        size = wav.stat().st_size
    except OSError as exc:
        raise VoiceError(f"cannot read {wav}: {exc.strerror}") from None
    if size > _MAX_WAV_BYTES:
        raise VoiceError(f"{wav} is too long for a spoken command ({size} bytes)")
    # Silence around the speech: without it the decoder drops a last word cut short.
    proc = subprocess.run([_sox(), "-q", str(wav), "-t", "raw", "-r", str(_SAMPLE_RATE),
                           "-c", "1", "-b", "16", "-e", "signed-integer", "-",
                           "pad", "0.5", "1.0"],
                          capture_output=True, timeout=60, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise VoiceError(f"cannot read {wav} as audio: {reason[-1] if reason else 'sox failed'}")
    return recogniser().decode(proc.stdout)


def capture_devices() -> list[str]:
    """ALSA capture devices (``/dev/snd/pcmC*D*c``)."""
    return sorted(glob.glob("/dev/snd/pcmC*D*c"))


def playback_devices() -> list[str]:
    return sorted(glob.glob("/dev/snd/pcmC*D*p"))


def listen_once(seconds: float = _LISTEN_SECONDS) -> str:
    """Record one command from the microphone (until 1.5 s of silence, at most ``seconds``)
    and return it as text."""
    if not capture_devices():
        raise VoiceError("no microphone: this machine has no audio capture device "
                         "(/dev/snd has no pcm…c); use a WAV file instead")
    proc = subprocess.run([_sox(), "-q", "-t", "alsa", "default", "-t", "raw", "-r",
                           str(_SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                           "-", "silence", "1", "0.1", "1%", "1", "1.5", "1%",
                           "trim", "0", str(seconds)],
                          capture_output=True, timeout=seconds + 10, check=False)
    if proc.returncode != 0:
        raise VoiceError("cannot record from the microphone: "
                         + (proc.stderr.decode(errors="replace").strip() or "sox failed"))
    text = recogniser().decode(proc.stdout)
    if not text:
        raise VoiceError("no command heard")
    return text


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise VoiceError("speech output needs espeak-ng (Debian package espeak-ng)")
    return path


def synthesise(text: str, wav: str | os.PathLike[str], lang: str = "en") -> None:
    """Write ``text`` spoken (English or French voice) to a WAV file."""
    voice = "fr" if lang == "fr" else "en-us"
    proc = subprocess.run([_espeak(), "-v", voice, "-s", "140", "-w", os.fspath(wav), "--",
                           text[:2000]], capture_output=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise VoiceError("espeak-ng failed: " + proc.stderr.decode(errors="replace").strip())


def speak(text: str, lang: str = "en") -> None:
    """Say ``text`` on the loudspeaker."""
    if not playback_devices():
        raise VoiceError("no loudspeaker: this machine has no audio output device "
                         "(/dev/snd has no pcm…p)")
    with tempfile.TemporaryDirectory(prefix="exo-speak-") as tmp:
        wav = Path(tmp) / "say.wav"
        synthesise(text, wav, lang)
        proc = subprocess.run([_sox(), "-q", str(wav), "-t", "alsa", "default"],
                              capture_output=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise VoiceError("cannot play audio: "
                             + (proc.stderr.decode(errors="replace").strip() or "sox failed"))
