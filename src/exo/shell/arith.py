"""``$((…))``, ``(( … ))`` and ``let``: integer arithmetic as in sh and bash.

A small precedence-climbing parser of bash's grammar (rather than Python's own parser,
which this used to lean on: it let ``not``, ``and``, ``1 if 1 else 2``, ``0b101`` and
``1 // 2`` through as arithmetic, refused ``?:``, ``,``, ``x++`` and octal ``010``, and
evaluated both sides of ``&&``). From the loosest: ``,``; the assignments ``= *= /= %=
+= -= <<= >>= &= ^= |=``; ``?:``; ``||``; ``&&``; ``|``; ``^``; ``&``; ``== !=``; ``< <=
> >=``; ``<< >>``; ``+ -``; ``* / %``; ``**``; the unary ``! ~ - + ++x --x``; ``x++
x--``. Constants are decimal, ``0x`` hexadecimal, ``0`` octal or ``BASE#DIGITS`` (2 to
64). A variable's value is a number or, in its turn, an expression (bash's ``y=3+4;
$((y*2))`` is 14), at most ``MAX_VARIABLE_DEPTH`` deep and ``MAX_VARIABLE_EVALUATIONS``
in one expression; unset or empty, it is 0.

Every value is a signed 64-bit integer that wraps, as bash's (``$((1<<100000000))`` once
made megabytes of digits in the kernel; a shift's count is taken modulo 64, as on
x86-64). Nothing here can run code: an expression is only ever these tokens.
"""

from __future__ import annotations

import functools
import re
import threading

from exo.shell.parser import ParseError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    Node = tuple[object, ...]

_BITS = 64
#: A variable whose value is an expression is evaluated in its turn: at most this deep,
#: and this many in one expression (``a=b+b; b=c+c; …`` doubles the work at each level).
MAX_VARIABLE_DEPTH = 32
MAX_VARIABLE_EVALUATIONS = 10_000
#: The most text of variables' expressions one expression evaluates, in all (a variable of
#: 4000 terms referenced 2000 times took 14 s of the kernel's thread; bash 0.2 s).
MAX_VARIABLE_BYTES = 1 << 20
#: Parentheses and unary operators nested in one expression.
MAX_NESTING = 256
_nesting = threading.local()

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>[0-9][0-9A-Za-z@_#]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><<=|>>=|\*\*|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[*/%+\-&^|]=|[-+*/%<>&^|!~?:=,()[\]])
)""", re.VERBOSE)
_ASSIGN_OPS = {"=", "*=", "/=", "%=", "+=", "-=", "<<=", ">>=", "&=", "^=", "|="}
#: Binary operators by precedence, loosest first (``&&``, ``||``, ``?:``, ``,``, the
#: assignments and ``**`` are parsed apart).
_LEVELS = (("|",), ("^",), ("&",), ("==", "!="), ("<", "<=", ">", ">="), ("<<", ">>"),
           ("+", "-"), ("*", "/", "%"))
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ@_"


def _wrap(value: int) -> int:
    """``value`` as a signed 64-bit integer (two's complement, wrapped)."""
    return ((value + (1 << (_BITS - 1))) & ((1 << _BITS) - 1)) - (1 << (_BITS - 1))


def _tdiv(a: int, b: int) -> int:
    """C's (and sh's) division: truncated toward zero, not floored."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _number(text: str, expr: str) -> int:
    """A constant as bash reads it: ``0x1f``, ``017`` (octal), ``2#101``, ``42``."""
    base, digits = 10, text
    if "#" in text:
        head, _, digits = text.partition("#")
        if not head.isdigit() or not 2 <= int(head) <= 64 or not digits:
            raise ParseError(f"bad arithmetic: {text}: invalid base in {expr.strip()}")
        base = int(head)
    elif text[:2] in ("0x", "0X") and len(text) > 2:
        base, digits = 16, text[2:]
    elif text.startswith("0") and len(text) > 1:
        base, digits = 8, text[1:]
    value = 0
    for ch in digits:
        d = _DIGITS.find(ch) if base > 36 else _DIGITS.find(ch.lower())
        if d < 0 or d >= base:
            raise ParseError(f"bad arithmetic: {text}: value too great for base in "
                             f"{expr.strip()}")
        value = (value * base + d) & ((1 << _BITS) - 1)  # (64 KiB of digits stay cheap)
    return _wrap(value)


class _Parser:
    """``expr`` as a tree of tuples (``Node``): ("n", value), ("v", name, sub), ("u", op,
    x), ("pre"/"post", op, name, sub), ("b", op, x, y), ("c", x, ((op, y), …)) for a
    chain of one level, ("&&"/"||", x, y), ("?", c, x, y), ("=", op, name, sub, x),
    (",", x, y); ``sub``: an array element's subscript (``a[i+1]``), else None."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(expr):
            m = _TOKEN.match(expr, pos)
            if m is None or m.end() == pos:
                if expr[pos:].strip():
                    raise ParseError(f"bad arithmetic: {expr.strip()}")
                break
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0
        self.depth = 0

    def peek(self) -> str:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else ""

    def take(self) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise ParseError(f"bad arithmetic: {self.expr.strip()}: operand expected")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.comma()
        if self.i < len(self.tokens):
            raise ParseError(f"bad arithmetic: {self.expr.strip()}: unexpected "
                             f"'{self.peek()}'")
        return node

    def comma(self) -> Node:
        node = self.assignment()
        while self.peek() == ",":
            self.take()
            node = (",", node, self.assignment())
        return node

    def assignment(self) -> Node:
        start = self.i
        if self.i < len(self.tokens) and self.tokens[self.i][0] == "name":
            name, sub = self.lvalue()
            if self.peek() in _ASSIGN_OPS:
                op = self.take()[1]
                return ("=", op, name, sub, self.nested(self.assignment))
        self.i = start
        return self.ternary()

    def lvalue(self) -> tuple[str, Node | None]:
        """A variable: ``NAME`` or an array's element ``NAME[EXPR]``."""
        name = self.take()[1]
        if self.peek() != "[":
            return name, None
        self.take()
        start = self.i
        inner = self.nested(self.comma)
        if self.take()[1] != "]":
            raise ParseError(f"bad arithmetic: {self.expr.strip()}: ']' expected")
        # (with its text: an associative array's key is that, not a number)
        text = "".join(str(token[1]) for token in self.tokens[start:self.i - 1])
        return name, ("[]", inner, text)

    def ternary(self) -> Node:
        cond = self.logical("||")
        if self.peek() != "?":
            return cond
        self.take()
        yes = self.nested(self.comma)
        if self.take()[1] != ":":
            raise ParseError(f"bad arithmetic: {self.expr.strip()}: ':' expected")
        return ("?", cond, yes, self.nested(self.assignment))

    def logical(self, op: str) -> Node:
        def below() -> Node:
            return self.logical("&&") if op == "||" else self.binary(0)

        node = below()
        while self.peek() == op:
            self.take()
            node = (op, node, below())
        return node

    def binary(self, level: int) -> Node:
        if level == len(_LEVELS):
            return self.power()
        node = self.binary(level + 1)
        rest: list[tuple[str, Node]] = []
        while self.peek() in _LEVELS[level]:
            op = self.take()[1]
            rest.append((op, self.binary(level + 1)))
        # A chain of one level (1+2+…+n) is kept flat and evaluated in a loop: nested, a
        # long one ran out of Python's stack.
        return ("c", node, tuple(rest)) if rest else node

    def power(self) -> Node:
        """``**``, right to left (2**3**2 is 2**9), over the unary operators as bash
        has it: -2**2 is 4."""
        node = self.unary()
        if self.peek() == "**":
            self.take()
            node = ("b", "**", node, self.nested(self.power))
        return node

    def unary(self) -> Node:
        op = self.peek()
        if op in ("++", "--"):
            after = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else ("", "")
            if after[0] == "name":
                self.take()
                return ("pre", op, *self.lvalue())
            # before anything but a name, two signs (bash: --5 is 5)
            self.take()
            inner = ("u", op[0], self.nested(self.unary))
            return ("u", op[0], inner)
        if op in ("!", "~", "-", "+"):
            self.take()
            return ("u", op, self.nested(self.unary))
        return self.postfix()

    def postfix(self) -> Node:
        kind, text = self.take()
        if kind == "num":
            return ("n", _number(text, self.expr))
        if kind == "name":
            self.i -= 1
            name, sub = self.lvalue()
            if self.peek() in ("++", "--"):
                return ("post", self.take()[1], name, sub)
            return ("v", name, sub)
        if text == "(":
            node = self.nested(self.comma)
            if self.take()[1] != ")":
                raise ParseError(f"bad arithmetic: {self.expr.strip()}: ')' expected")
            return node
        raise ParseError(f"bad arithmetic: {self.expr.strip()}: operand expected before "
                         f"'{text}'")

    def nested(self, rule: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ParseError("bad arithmetic: nested too deeply")
        try:
            return rule()
        finally:
            self.depth -= 1


class _Evaluator:
    def __init__(self, expr: str, lookup: Callable[[str], str],
                 assign: Callable[[str, str], None] | None) -> None:
        self.expr, self.lookup, self.assign = expr, lookup, assign

    def element(self, name: str, sub: Node | None) -> tuple[Mapping[Any, str], int | str]:
        """The elements of the array ``name`` and the index ``sub`` gives (an associative
        array's: the key, its text as typed)."""
        from exo.shell import arrays

        assert sub is not None and sub[0] == "[]"
        raw = self.lookup(name + arrays.ELEMENTS)
        if arrays.is_assoc(raw):
            return arrays.assoc_view(raw), str(sub[2])
        elements = arrays.view(raw)
        try:
            return elements, arrays.index_of(elements, self.run(sub[1]))  # type: ignore[arg-type]
        except ValueError:
            raise ParseError(f"{name}: bad array subscript") from None

    def variable(self, name: str, sub: Node | None = None) -> int:
        if sub is not None:
            elements, index = self.element(name, sub)
            return self.value(f"{name}[{index}]", elements.get(index, ""))
        return self.value(name, self.lookup(name))

    def value(self, name: str, text: str) -> int:
        raw = text.strip() or "0"
        if re.fullmatch(r"-?[0-9]+", raw):  # (x=010 is 8, as in bash; no int(): it
            # refuses more than 4300 digits)
            value = _number(raw.lstrip("-"), raw)
            return _wrap(-value) if raw.startswith("-") else value
        depth = getattr(_nesting, "depth", 0)
        _nesting.count = getattr(_nesting, "count", 0) + 1
        _nesting.bytes = getattr(_nesting, "bytes", 0) + len(raw)
        if depth >= MAX_VARIABLE_DEPTH or _nesting.count > MAX_VARIABLE_EVALUATIONS:
            raise ParseError(f"{name}: expression recursion level exceeded")
        if _nesting.bytes > MAX_VARIABLE_BYTES:
            raise ParseError(f"{name}: the variables' expressions evaluated come to more "
                             f"than {MAX_VARIABLE_BYTES >> 20} MiB")
        _nesting.depth = depth + 1
        try:
            return evaluate(raw, self.lookup)
        except ParseError as exc:
            if "recursion level" in str(exc) or "MiB" in str(exc):
                raise
            raise ParseError(f"{name}={raw!r}: not an integer") from None
        finally:
            _nesting.depth = depth

    def store(self, name: str, value: int, sub: Node | None = None) -> int:
        if self.assign is None:
            raise ParseError(f"bad arithmetic: {self.expr.strip()}: assigning to {name} "
                             "needs (( … )) or let")
        if sub is None:
            self.assign(name, str(value))
            return value
        from exo.shell import arrays

        _, index = self.element(name, sub)
        raw = self.lookup(name + arrays.ELEMENTS)
        try:
            self.assign(name, arrays.assoc_with(raw, {str(index): str(value)})
                        if isinstance(index, str) else
                        arrays.with_items(raw, {index: str(value)}))
        except ValueError as exc:  # (too many elements)
            raise ParseError(f"{name}: {exc}") from None
        return value

    def binary(self, op: str, a: int, b: int) -> int:
        if op in ("/", "%") and b == 0:
            raise ParseError(f"division by zero in $(({self.expr.strip()}))")
        if op == "**" and b < 0:
            raise ParseError(f"exponent less than 0 in $(({self.expr.strip()}))")
        result = {
            "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
            "/": lambda: _tdiv(a, b), "%": lambda: a - b * _tdiv(a, b),
            "**": lambda: pow(a, b, 1 << _BITS), "<<": lambda: a << (b & (_BITS - 1)),
            ">>": lambda: a >> (b & (_BITS - 1)), "&": lambda: a & b, "|": lambda: a | b,
            "^": lambda: a ^ b, "<": lambda: int(a < b), "<=": lambda: int(a <= b),
            ">": lambda: int(a > b), ">=": lambda: int(a >= b), "==": lambda: int(a == b),
            "!=": lambda: int(a != b),
        }[op]()
        return _wrap(result)

    def run(self, node: Node) -> int:
        kind = node[0]
        if kind == "n":
            return node[1]  # type: ignore[return-value]
        if kind == "v":
            return self.variable(str(node[1]), node[2])  # type: ignore[arg-type]
        if kind == "u":
            value = self.run(node[2])  # type: ignore[arg-type]
            op = node[1]
            return _wrap(-value if op == "-" else value if op == "+" else
                         int(not value) if op == "!" else ~value)
        if kind in ("pre", "post"):
            name, sub = str(node[2]), node[3]
            old = self.variable(name, sub)  # type: ignore[arg-type]
            new = self.store(name, _wrap(old + (1 if node[1] == "++" else -1)),
                             sub)  # type: ignore[arg-type]
            return new if kind == "pre" else old
        if kind == "b":
            return self.binary(str(node[1]), self.run(node[2]),  # type: ignore[arg-type]
                               self.run(node[3]))  # type: ignore[arg-type]
        if kind == "c":
            value = self.run(node[1])  # type: ignore[arg-type]
            for op, operand in node[2]:  # type: ignore[attr-defined]
                value = self.binary(op, value, self.run(operand))
            return value
        if kind == "&&":
            return int(bool(self.run(node[1])) and bool(self.run(node[2])))  # type: ignore[arg-type]
        if kind == "||":
            return int(bool(self.run(node[1])) or bool(self.run(node[2])))  # type: ignore[arg-type]
        if kind == "?":
            return self.run(node[2] if self.run(node[1]) else node[3])  # type: ignore[arg-type]
        if kind == "=":
            op, name, sub = str(node[1]), str(node[2]), node[3]
            value = self.run(node[4])  # type: ignore[arg-type]
            if op != "=":
                value = self.binary(op[:-1], self.variable(name, sub),  # type: ignore[arg-type]
                                    value)
            return self.store(name, value, sub)  # type: ignore[arg-type]
        self.run(node[1])  # type: ignore[arg-type]  # ","
        return self.run(node[2])  # type: ignore[arg-type]


@functools.lru_cache(maxsize=256)
def _parse(expr: str) -> Node:
    """``expr``'s tree, remembered: a loop's test and step are the same few texts."""
    return _Parser(expr).parse()


def _calculate(expr: str, lookup: Callable[[str], str],
               assign: Callable[[str, str], None] | None) -> int:
    if getattr(_nesting, "depth", 0) == 0:
        _nesting.count = _nesting.bytes = 0
    expr = expr.replace('"', "")  # (quote removal: $(( "1" + 2 )) is 3, as in sh)
    if not expr.strip():
        return 0
    try:
        tree = _parse(expr)
        return _Evaluator(expr, lookup, assign).run(tree)
    except RecursionError:  # (a chain of thousands of operators)
        raise ParseError("bad arithmetic: nested too deeply") from None


def evaluate(expr: str, lookup: Callable[[str], str],
             assign: Callable[[str, str], None] | None = None) -> int:
    """The value of ``expr`` (``$((…))``, ``${x:OFFSET}``); an assignment in it is made
    through ``assign``, refused without one."""
    return _calculate(expr, lookup, assign)


def execute(expr: str, lookup: Callable[[str], str], assign: Callable[[str, str], None]
            ) -> int:
    """``let EXPR`` and ``(( EXPR ))``: ``expr``'s value, its assignments (``x=…``,
    ``x+=…``, ``x++``, ``--x``…) made through ``assign``."""
    return _calculate(expr, lookup, assign)
