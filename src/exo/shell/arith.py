"""``$((…))``: integer arithmetic as in sh, evaluated from Python's own parse tree.

Only integer literals, variable names and the C operators sh has are accepted; anything
else (calls, attributes, strings) is a ``ParseError``, so an expression can never run code.
Every value is a signed 64-bit integer that wraps, as bash's: Python's own integers have
no bound, and ``$((1<<100000000))`` or ``$(((2**4096)**4096))`` made megabytes of digits
and seconds of work in the kernel (a shift's count is taken modulo 64, as on x86-64).
"""

from __future__ import annotations

import ast
import operator
import re
import threading

from exo.shell.parser import ParseError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_BITS = 64


def _wrap(value: int) -> int:
    """``value`` as a signed 64-bit integer (two's complement, wrapped)."""
    return ((value + (1 << (_BITS - 1))) & ((1 << _BITS) - 1)) - (1 << (_BITS - 1))


def _tdiv(a: int, b: int) -> int:
    """C's (and sh's) division: truncated toward zero, not floored."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


_BINARY: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Mod: lambda a, b: a - b * _tdiv(a, b), ast.Pow: lambda a, b: pow(a, b, 1 << _BITS),
    ast.LShift: lambda a, b: a << (b & (_BITS - 1)),
    ast.RShift: lambda a, b: a >> (b & (_BITS - 1)), ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_, ast.BitXor: operator.xor,
    ast.Div: lambda a, b: _tdiv(a, b), ast.FloorDiv: lambda a, b: _tdiv(a, b),
}
_COMPARE: dict[type[ast.cmpop], Callable[[int, int], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}


#: A variable whose value is an expression is evaluated in its turn (``y=3+4;
#: $((y*2))`` is 14, as in bash): at most this deep, and this many in one expression
#: (``a=b+b; b=c+c; …`` doubles the work at each level).
MAX_VARIABLE_DEPTH = 32
MAX_VARIABLE_EVALUATIONS = 10_000
_nesting = threading.local()


def evaluate(expr: str, lookup: Callable[[str], str]) -> int:
    """The value of ``expr``; unset or empty variables count as 0, as in sh."""
    if getattr(_nesting, "depth", 0) == 0:
        _nesting.count = 0
    text = expr.replace("&&", " and ").replace("||", " or ").strip()
    text = text.replace("!=", "\0").replace("!", " not ").replace("\0", "!=")
    if not text:
        return 0
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ParseError(f"bad arithmetic: {expr.strip()}") from None
    except (MemoryError, RecursionError):  # (6000 unary minuses: the parser's stack)
        raise ParseError("bad arithmetic: nested too deeply") from None
    return _eval(tree.body, lookup, expr)


def _eval(node: ast.expr, lookup: Callable[[str], str], expr: str) -> int:
    return _wrap(_value(node, lookup, expr))


def _value(node: ast.expr, lookup: Callable[[str], str], expr: str) -> int:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Name):
        raw = lookup(node.id).strip() or "0"
        try:
            return int(raw, 0)
        except ValueError:
            pass
        depth = getattr(_nesting, "depth", 0)
        _nesting.count = getattr(_nesting, "count", 0) + 1
        if depth >= MAX_VARIABLE_DEPTH or _nesting.count > MAX_VARIABLE_EVALUATIONS:
            raise ParseError(f"{node.id}: expression recursion level exceeded")
        _nesting.depth = depth + 1
        try:
            return evaluate(raw, lookup)
        except ParseError as exc:
            if "recursion level" in str(exc):
                raise
            raise ParseError(f"{node.id}={raw!r}: not an integer") from None
        finally:
            _nesting.depth = depth
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, lookup, expr)
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return value
        if isinstance(node.op, ast.Not):
            return int(not value)
        if isinstance(node.op, ast.Invert):
            return ~value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, lookup, expr), _eval(node.right, lookup, expr)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise ParseError(f"division by zero in $(({expr.strip()}))")
        if isinstance(node.op, ast.Pow) and right < 0:
            raise ParseError(f"exponent less than 0 in $(({expr.strip()}))")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, lookup, expr) for v in node.values]
        return int(all(values) if isinstance(node.op, ast.And) else any(values))
    if isinstance(node, ast.Compare) and all(type(o) in _COMPARE for o in node.ops):
        left = _eval(node.left, lookup, expr)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, lookup, expr)
            if not _COMPARE[type(op)](left, right):
                return 0
            left = right
        return 1
    if isinstance(node, ast.IfExp):
        cond = _eval(node.test, lookup, expr)
        return _eval(node.body if cond else node.orelse, lookup, expr)
    raise ParseError(f"bad arithmetic: {expr.strip()}")


_ASSIGNMENT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*([-+*/%&|^]|<<|>>)?=(?!=)(.*)",
                         re.DOTALL)
_STEP = re.compile(r"\s*(?:(\+\+|--)\s*([A-Za-z_][A-Za-z0-9_]*)|"
                   r"([A-Za-z_][A-Za-z0-9_]*)\s*(\+\+|--))\s*")


def execute(expr: str, lookup: Callable[[str], str], assign: Callable[[str, str], None]
            ) -> int:
    """``let EXPR`` and ``(( EXPR ))``: ``expr``'s value, with what bash's arithmetic
    assigns done through ``assign``: ``NAME=EXPR``, ``NAME op= EXPR`` and ``NAME++``,
    ``++NAME`` (and ``--``). A ``++NAME`` is its new value, a ``NAME++`` its old one."""
    step = _STEP.fullmatch(expr)
    if step is not None:
        name = step.group(2) or step.group(3)
        old = evaluate(name, lookup)
        new = _wrap(old + (1 if "+" in (step.group(1) or step.group(4)) else -1))
        assign(name, str(new))
        return new if step.group(1) else old
    m = _ASSIGNMENT.fullmatch(expr)
    if m is None:
        return evaluate(expr, lookup)
    name, op, rest = m.groups()
    value = evaluate(rest, lookup)
    if op:
        value = evaluate(f"{evaluate(name, lookup)} {op} ({value})", lookup)
    assign(name, str(value))
    return value
