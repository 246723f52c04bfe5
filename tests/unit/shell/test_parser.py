from __future__ import annotations

import pytest

from exo.shell.parser import ParseError, parse_pipeline, split_list

VARS = {"HOME": "/home/root", "X": "a b", "?": "3"}


def words(line: str) -> list[list[str]]:
    p = parse_pipeline(line, lambda n: VARS.get(n, ""))
    return [[w.text for w in c.argv] for c in p.commands]


def test_words_quotes_and_escapes() -> None:
    assert words("echo 'a  b' \"c $X\" d\\ e") == [["echo", "a  b", "c a b", "d e"]]


def test_variables_status_and_braces() -> None:
    assert words("echo $? ${HOME}/x $UNSET.") == [["echo", "3", "/home/root/x", "."]]


def test_single_quotes_do_not_expand() -> None:
    assert words("echo '$HOME'") == [["echo", "$HOME"]]


def test_tilde() -> None:
    assert words("cd ~ ~/docs a~") == [["cd", "/home/root", "/home/root/docs", "a~"]]


def test_pipes_and_redirections() -> None:
    p = parse_pipeline("cat < in | grep x > out 2>&1", lambda n: "")
    assert [[w.text for w in c.argv] for c in p.commands] == [["cat"], ["grep", "x"]]
    assert [(r.op, r.target) for r in p.commands[0].redirects] == [("<", "in")]
    assert [(r.op, r.target) for r in p.commands[1].redirects] == [(">", "out"), ("2>&1", "")]


def test_append_and_stderr_redirect() -> None:
    p = parse_pipeline("x >> a 2> b", lambda n: "")
    assert [(r.op, r.target) for r in p.commands[0].redirects] == [(">>", "a"), ("2>", "b")]


def test_list_operators_split_outside_quotes() -> None:
    items = split_list("a; b && 'c;d' || e # comment")
    assert [(i.connector, i.source) for i in items] == [
        (";", "a"), (";", "b"), ("&&", "'c;d'"), ("||", "e")]


def test_glob_marks_unquoted_only() -> None:
    p = parse_pipeline("ls *.txt '*.md'", lambda n: "")
    assert [w.globbable for w in p.commands[0].argv] == [False, True, False]


@pytest.mark.parametrize("line", ["echo 'open", 'echo "open', "| x", "a |", "echo >",
                                  "echo ${bad name}"])
def test_syntax_errors(line: str) -> None:
    with pytest.raises(ParseError):
        for item in split_list(line):
            parse_pipeline(item.source, lambda n: "")


@pytest.mark.parametrize("line", ["a &&", "; a"])
def test_list_syntax_errors(line: str) -> None:
    with pytest.raises(ParseError):
        split_list(line)


def test_background_marker_and_redirect_ampersand() -> None:
    items = split_list("sleep 5 & echo a 2>&1; b&")
    assert [(i.source, i.background) for i in items] == [
        ("sleep 5", True), ("echo a 2>&1", False), ("b", True)]
