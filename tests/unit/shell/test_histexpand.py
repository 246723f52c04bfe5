"""History expansion at the prompt: `!!` alone worked; `!N`, `!-N`, `!PREFIX` and `!$`
were typed through as they are."""

from __future__ import annotations

import pytest

from exo.shell.histexpand import expand
from exo.shell.parser import ParseError

HISTORY = ["ls /tmp", "cat notes.txt", "echo 'a b' done"]


@pytest.mark.parametrize(("line", "expanded"), [
    ("!!", "echo 'a b' done"),
    ("sudo !!", "sudo echo 'a b' done"),
    ("!1", "ls /tmp"),
    ("!-2 | wc", "cat notes.txt | wc"),
    ("!ca", "cat notes.txt"),
    ("vi !$", "vi done"),
    ("[ ! -e f ] && echo hi!", "[ ! -e f ] && echo hi!"),
    ("test a != b", "test a != b"),
    ('echo "hi!"', 'echo "hi!"'),
    ("echo '!!'", "echo '!!'"),
    ("echo \\!!", "echo \\!!"),
    ("no bang", "no bang")])
def test_events_and_words(line: str, expanded: str) -> None:
    assert expand(line, HISTORY, 1 << 20) == expanded


@pytest.mark.parametrize("line", ["!9", "!-4", "!zz", "!0"])
def test_an_event_not_found_is_said(line: str) -> None:
    with pytest.raises(ParseError, match="event not found"):
        expand(line, HISTORY, 1 << 20)
    with pytest.raises(ParseError, match="event not found"):
        expand("!!", [], 1 << 20)


def test_a_line_grown_past_the_limit_is_refused() -> None:
    with pytest.raises(ParseError, match="longer than"):
        expand("!! " * 1000, ["x" * 5000], 1 << 20)


def test_the_last_word_keeps_its_quotes_and_stops_at_an_operator() -> None:
    """`rm !$` after `touch 'my file'` was `rm my file`: two other files."""
    assert expand("rm !$", ["touch 'my file'"], 1 << 20) == "rm 'my file'"
    assert expand("cat !$", ["echo hi>out"], 1 << 20) == "cat out"


def test_each_event_is_looked_up_once_a_line() -> None:
    """A line of `!$` after a 400 KB line split it for each `!$` (two minutes)."""
    import time

    history = ["a"] + ["x " * 1000] * 999 + ["y " * 200_000]
    start = time.monotonic()
    assert expand("!$ " * 100_000, history, 8 << 20).count("y") == 100_000
    assert expand("!a " * 100_000, history, 8 << 20).count("a") == 100_000
    assert time.monotonic() - start < 30  # (was minutes; not a timing assertion's tight one)
    with pytest.raises(ParseError, match="event not found"):
        expand("!" + "9" * 5000, history, 1 << 20)
