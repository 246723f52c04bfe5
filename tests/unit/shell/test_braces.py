"""Brace expansion: `mkdir -p src/{a,b}`, `cp f{,.bak}` and `{1..3}` printed their
braces; each word now expands as bash's does, within bounds."""

from __future__ import annotations

import time

import pytest
from tests.unit.shell._support import run

from exo.shell import Shell
from exo.shell.braces import expand
from exo.shell.parser import ParseError


@pytest.mark.parametrize(("raw", "words"), [
    ("a{b,c}d", ["abd", "acd"]), ("f{,.bak}", ["f", "f.bak"]),
    ("{1..3}", ["1", "2", "3"]), ("{3..1}", ["3", "2", "1"]), ("{01..03}", ["01", "02", "03"]),
    ("{1..10..3}", ["1", "4", "7", "10"]), ("{a..c}", ["a", "b", "c"]),
    ("{a,{b,c}}x", ["ax", "bx", "cx"]), ("{a,b}{1,2}", ["a1", "a2", "b1", "b2"]),
    ("'{a,b}'", None), ('"{a,b}"', None), ("\\{a,b}", None), ("{}", None), ("{x}", None),
    ("${HOME}", None), ("{a,b", None), ("$(echo {a,b})", None)])
def test_words(raw: str, words: list[str] | None) -> None:
    assert expand(raw) == words


@pytest.mark.parametrize("raw", ["{" * 100_000 + "a,b", "{x," * 5000 + "y" + "}" * 5000,
                                 "{1..100000}", "{a,b}" * 17, "{a,b}" * 100_000])
def test_what_would_cost_without_end_is_refused(raw: str) -> None:
    start = time.monotonic()
    with pytest.raises(ParseError):
        expand(raw)
    assert time.monotonic() - start < 10  # (8 s and more, before the bounds)


def test_in_the_shell(root_shell: Shell) -> None:
    assert run(root_shell, "mkdir -p /tmp/br/{one,two}; ls /tmp/br")[1] == "one\ntwo\n"
    assert run(root_shell, "echo x > /tmp/br/f; cp /tmp/br/f{,.bak}; ls /tmp/br")[1] == \
        "f\nf.bak\none\ntwo\n"
    assert run(root_shell, "x={a,b}; echo $x")[1] == "{a,b}\n"  # not in an assignment
    assert run(root_shell, "case b in {a,b}) echo no;; *) echo pattern;; esac")[1] == \
        "pattern\n"  # nor in a pattern
    assert run(root_shell, "echo {1..70000}")[0] == 2
