"""``exo ai``: the assistant's command line, and ``exo ai parse`` (the intent engine alone).

``exo ai "…"`` hands the sentence to the assistant (exo.agents.assistant, imported lazily:
); ``exo ai --voice`` listens once first. ``exo ai parse``
only parses: ``--json`` prints ``{"intent", "slots", "confidence"}`` (a contract, issue 15),
``--stdin`` one sentence per line, one JSON object per line, in order. Bad input is one
line on stderr and exit status 1; with ``--stdin`` a bad line also gets an
``{"error": …}`` object in its place so the output stays aligned with the input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO

import click

if TYPE_CHECKING:
    from exo.agents.intent import Parser
    from exo.agents.intents import Intent

_MAX_LINE_BYTES = 4 * 1000 + 2  # MAX_CHARS of UTF-8 (at most 4 bytes each) and a newline


def register(main: click.Group) -> None:
    """Add ``exo ai`` to the ``exo`` command."""
    main.add_command(ai)


def _fail(message: str) -> None:
    click.echo(f"exo ai: {message}", err=True)
    raise SystemExit(1)


class _SentenceGroup(click.Group):
    """A group whose first free word, when it is no subcommand, starts a sentence:
    ``exo ai parse …`` runs ``parse``, ``exo ai "how busy is the cpu"`` asks the assistant."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {name for p in self.params if isinstance(p, click.Option)
                       and not p.is_flag for name in p.opts}
        first, skip = None, False
        for i, a in enumerate(args):
            if skip:
                skip = False
            elif a in takes_value:
                skip = True  # its value, not the sentence
            elif not a.startswith("-"):
                first = i
                break
        if first is not None and args[first] not in self.commands:
            ctx.meta["exo.ai.sentence"] = " ".join(args[first:])
            args = args[:first]
        return super().parse_args(ctx, args)


@click.group(cls=_SentenceGroup, invoke_without_command=True,
             subcommand_metavar="SENTENCE | COMMAND [ARGS]...")
@click.option("--voice", is_flag=True, help="Listen once on the microphone for the question.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON for scripts.")
@click.option("-y", "--yes", is_flag=True,
              help="Confirm a destructive action without asking (kill, remove, revoke, shutdown).")
@click.option("--speak", is_flag=True, help="Say the answer on the loudspeaker (espeak-ng).")
@click.option("--speak-to", type=click.Path(dir_okay=False, writable=True), default=None,
              metavar="FILE.wav", help="Write the spoken answer to a WAV file.")
@click.pass_context
def ai(ctx: click.Context, voice: bool, as_json: bool, yes: bool, speak: bool,
       speak_to: str | None) -> None:
    """Ask the local assistant (`exo ai "Quel est l'usage CPU ?"`), or parse only."""
    if ctx.invoked_subcommand is not None:
        return
    sentence: str | None = ctx.meta.get("exo.ai.sentence")
    if voice:
        if sentence:
            _fail("give either a sentence or --voice, not both")
        from exo.agents.voice import VoiceError, listen_once

        try:
            sentence = listen_once()
        except VoiceError as exc:
            _fail(str(exc))
        click.echo(f"heard: {sentence}", err=True)
    if not sentence:
        click.echo(ctx.get_help())
        return
    _check(sentence)
    _ask_assistant(sentence, as_json=as_json, yes=yes, speak=speak, speak_to=speak_to)


def _confirm(yes: bool) -> Callable[[str], bool]:
    """Destructive intents ask y/N on a terminal; without one they need ``--yes``."""
    def confirm(what: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            click.echo(f"exo ai: {what}: not confirmed (no terminal; pass --yes)", err=True)
            return False
        return click.confirm(f"exo ai: {what}?", default=False, err=True)
    return confirm


def _ask_assistant(sentence: str, *, as_json: bool = False, yes: bool = False,
                   speak: bool = False, speak_to: str | None = None) -> None:
    from exo.agents import assistant

    talk = assistant.Conversation()
    answer = talk.answer(sentence, confirm=_confirm(yes))
    if answer.followup is not None and not as_json and sys.stdin.isatty():
        click.echo(answer.line())  # asked back: the reply picks 1, 2, yes or no
        reply = click.prompt("exo ai", default="", show_default=False, err=True)
        answer = talk.answer(reply or "no", confirm=_confirm(yes))
    if as_json:
        click.echo(json.dumps(answer.to_json(), ensure_ascii=False))
    else:
        click.echo(answer.line())
    if speak or speak_to:
        _say(answer.text, answer.lang, speak=speak, speak_to=speak_to)
    if not answer.ok:
        raise SystemExit(1)


def _say(text: str, lang: str, *, speak: bool, speak_to: str | None) -> None:
    """The answer spoken in the language asked: to a WAV file, on the loudspeaker, or both;
    where there is no loudspeaker, one line saying so and exit status 1."""
    from exo.agents.voice import VoiceError, synthesise
    from exo.agents.voice import speak as say_aloud

    try:
        if speak_to:
            synthesise(text, speak_to, lang)
        if speak:
            say_aloud(text, lang)
    except VoiceError as exc:
        _fail(str(exc))


def _check(sentence: str) -> str:
    from exo.agents.intent import IntentInputError, Parser

    try:
        return Parser.check(sentence)
    except IntentInputError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


@ai.command()
@click.argument("words", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--stdin", "from_stdin", is_flag=True,
              help="Parse one sentence per line of standard input.")
@click.option("--wav", type=click.Path(dir_okay=False), default=None,
              help="Parse the English command spoken in a WAV file (voice grammar).")
def parse(words: tuple[str, ...], as_json: bool, from_stdin: bool, wav: str | None) -> None:
    """Show the intent, slots and confidence of a sentence, without acting on it."""
    from exo.agents.intent import IntentInputError, default_parser
    from exo.agents.intent.model import ModelError

    if sum((bool(words), from_stdin, wav is not None)) > 1:
        _fail("give one of a sentence, --stdin or --wav")
    if not from_stdin and not words and wav is None:
        _fail("give a sentence to parse (or --stdin, or --wav FILE)")
    if wav is not None:
        from exo.agents.voice import VoiceError, recognise_wav

        try:
            heard = recognise_wav(wav)
        except VoiceError as exc:
            _fail(str(exc))
        if not heard:
            _fail(f"no command of the voice grammar heard in {wav}")
        click.echo(f"heard: {heard}", err=True)
        words = (heard,)
    try:
        parser = default_parser()
        if not from_stdin:
            try:
                intent = parser.parse(" ".join(words))
            except IntentInputError as exc:
                _fail(str(exc))
                return
            _show(intent, as_json)
            return
        if not _parse_stream(parser, sys.stdin.buffer, as_json):
            raise SystemExit(1)
    except ModelError as exc:
        _fail(str(exc))


def _parse_stream(parser: Parser, stream: BinaryIO, as_json: bool) -> bool:
    """Parse each line; True when every line was a sentence."""
    from exo.agents.intent import IntentInputError

    ok = True
    for number, raw, too_long in _lines(stream):
        try:
            if too_long:
                raise IntentInputError("sentence too long (over 1000 characters)")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise IntentInputError("not UTF-8 text") from None
            intent = parser.parse(text)
        except IntentInputError as exc:
            ok = False
            click.echo(f"exo ai: line {number}: {exc}", err=True)
            if as_json:
                click.echo(json.dumps({"error": str(exc)}, ensure_ascii=False))
            continue
        _show(intent, as_json)
        sys.stdout.flush()
    return ok


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without the newline, too long?); a long line is skipped in
    bounded pieces, never held whole."""
    number = 0
    while True:
        chunk = stream.readline(_MAX_LINE_BYTES)
        if not chunk:
            return
        number += 1
        too_long = not chunk.endswith(b"\n") and len(chunk) >= _MAX_LINE_BYTES
        while too_long and not chunk.endswith(b"\n"):
            chunk = stream.readline(_MAX_LINE_BYTES)
            if not chunk:
                break
        yield number, b"" if too_long else chunk.rstrip(b"\r\n"), too_long


def _show(intent: Intent, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(intent.to_json(), ensure_ascii=False))
        return
    from rich.console import Console
    from rich.markup import escape

    from exo.agents.intent import CONFIDENCE_THRESHOLD

    slots = "  ".join(f"[cyan]{escape(k)}[/]=[bold]{escape(v)}[/]"
                      for k, v in intent.slots.items())
    colour = "green" if intent.confidence >= CONFIDENCE_THRESHOLD else "yellow"
    style = "red" if intent.name == "unknown" else "bold"
    Console(highlight=False, soft_wrap=True).print(
        f"[{style}]{escape(intent.name)}[/]  {slots}  "
        f"[{colour}]confidence {intent.confidence:.2f}[/]  [dim]({intent.lang})[/]")
