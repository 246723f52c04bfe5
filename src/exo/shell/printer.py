"""A function's definition as text, from its parsed body (``declare -f``, ``type``).

The shell keeps a function as the nodes ``parse_blocks`` made (``exo.shell.parser``), each
command's raw text in its ``ListItem``; this writes them back one command a line, four
spaces a level, as bash's ``declare -f`` lays a function out. What it prints reads back
as the same function (``eval "$(declare -f f)"``).
"""

from __future__ import annotations

from exo.shell.core import _connector
from exo.shell.parser import Group, If, Loop, Simple, unit_end

TYPE_CHECKING = False
if TYPE_CHECKING:
    from exo.shell.parser import Case, Node

_INDENT = "    "


def function_text(name: str, group: Group) -> str:
    """``NAME () { …; }`` (or ``NAME () ( … )``) for the function ``group``."""
    body = group.body
    if len(body) == 1 and isinstance(body[0], Group) and body[0].subshell:
        lines = [f"{name} () ", "(", *_nodes(body[0].body, 1), ")"]
    else:
        lines = [f"{name} () ", "{ ", *_nodes(body, 1), "}"]
    if group.redirects:
        lines[-1] += " " + _here_strings(group.redirects)
    return "\n".join(lines)


def _nodes(nodes: list[Node], level: int) -> list[str]:
    out: list[str] = []
    for k, node in enumerate(nodes):
        lines = _node(node, level)
        connector = _connector(node)
        if k and connector in ("&&", "||"):
            # joined to the command before it, on its line
            first = lines[0].lstrip()
            out[-1] = out[-1].removesuffix(";") + f" {connector} " + first
            out += lines[1:]
        else:
            out += lines
    return out


def _node(node: Node, level: int) -> list[str]:
    pad = _INDENT * level
    if isinstance(node, Simple):
        item = node.item
        return [pad + _here_strings(item.source.strip()) + (" &" if item.background else ";")]
    if isinstance(node, Group) and node.name:  # a function defined by this one
        inner = function_text(node.name, node).split("\n")
        return [pad + line for line in inner]
    head = ""
    if node.timed is not None:
        head += "time -p " if node.timed == "posix" else "time "
    if node.negated:
        head += "! "
    if node.feeder is not None:
        feeder = _node(node.feeder, level)
        head = feeder[0].lstrip() + "\n".join(["", *feeder[1:]]).removesuffix(";")
        head = head.strip() + " | " + (node.prefix + " | " if node.prefix else "")
    elif node.prefix:
        head += node.prefix + " | "
    lines = _block(node, level, pad)
    lines[0] = pad + head + lines[0].lstrip()
    tail = (" " + _here_strings(node.redirects) if node.redirects else "") + \
        (" &" if node.background else ";")
    lines[-1] += tail
    return lines


def _block(node: If | Loop | Group | Case, level: int, pad: str) -> list[str]:
    inner = level + 1
    if isinstance(node, If):
        lines: list[str] = []
        for k, (condition, body) in enumerate(node.clauses):
            lines += _then(_clause("if" if k == 0 else "elif", condition, level, pad),
                           "then", pad)
            lines += _nodes(body, inner)
        if node.otherwise:
            lines.append(pad + "else")
            lines += _nodes(node.otherwise, inner)
        return [*lines, pad + "fi"]
    if isinstance(node, Loop):
        if node.kind == "arith":
            lines = [pad + f"for (({node.words}));"]
        elif node.kind == "for":
            lines = [pad + f"for {node.name} in {node.words};"]
        else:
            lines = _clause(node.kind, node.condition, level, pad)
        return _then(lines, "do", pad) + _nodes(node.body, inner) + [pad + "done"]
    if isinstance(node, Group):
        opening, closing = ("(", ")") if node.subshell else ("{", "}")
        return [pad + opening, *_nodes(node.body, inner), pad + closing]
    lines = [pad + f"case {node.subject} in"]
    for (patterns, body), end in zip(node.clauses, node.ends, strict=False):
        lines.append(pad + _INDENT + "|".join(patterns) + ")")
        lines += _nodes(body, inner + 1)
        lines.append(pad + _INDENT * 2 + end)
    return [*lines, pad + "esac"]


def _then(lines: list[str], word: str, pad: str) -> list[str]:
    """``then``/``do`` after a condition: on its last line when that ends a command."""
    if lines[-1].endswith(";"):
        return [*lines[:-1], f"{lines[-1]} {word}"]
    return [*lines, pad + word]


def _clause(word: str, condition: list[Node], level: int, pad: str) -> list[str]:
    """``if``/``while``/``until`` and its condition: on one line when it is one command."""
    lines = _nodes(condition, level + 1)
    if len(lines) == 1:
        return [pad + f"{word} {lines[0].strip()}"]
    return [pad + word, *lines]


def _here_strings(source: str) -> str:
    """``source`` with each here-document (which ``split_list`` made ``<< "BODY"``, the
    body a quoted word) written as the here-string of the same input: ``<<< "BODY"``
    less the body's last newline, which a here-string adds back (an empty body reads
    ``/dev/null``)."""
    if "<<" not in source:
        return source
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c in "'\"\\":
            end = unit_end(source, i)
            out.append(source[i:end])
            i = end
        elif source.startswith("<<<", i):
            out.append("<<<")
            i += 3
        elif source.startswith("<<", i):
            j = i + 2
            while j < n and source[j] == " ":
                j += 1
            end = unit_end(source, j) if j < n else n
            word = source[j:end]
            if len(word) >= 2 and word[0] == word[-1] and word[0] in "'\"":
                body = word[1:-1]
                out.append("< /dev/null" if not body else
                           "<<< " + word[0] + body.removesuffix("\n") + word[0])
            else:
                out.append(source[i:end])
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)
