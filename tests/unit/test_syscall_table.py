"""The syscall table, the kernel's handlers, exo_std, the control socket and
docs/syscalls.md agree; rows validate what they say; every error has its code."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from exo.abi import errors as abi_errors
from exo.abi import syscalls as table
from exo.abi.errors import ErrorCode, code_of
from exo.abi.syscalls import BOOTSTRAP, CONTROL_OPS, NOT_YET, SYSCALLS, TABLE
from exo.kernel import control
from exo.kernel.caps import errors as caps_errors
from exo.kernel.manifest import ManifestError
from exo.kernel.syscalls import HANDLERS, caps, ipc, proc, storage
from exo.sandbox import errors as sandbox_errors
from exo_std import errors as std_errors

ROOT = Path(__file__).resolve().parents[2]


def test_every_served_row_has_a_handler_and_every_handler_a_row() -> None:
    served = {s.name for s in TABLE if s.channel == BOOTSTRAP and s.status != NOT_YET}
    assert set(HANDLERS) == served
    for s in TABLE:
        if s.status == NOT_YET:
            assert s.name not in HANDLERS and s.note, s


def test_each_handler_lives_in_its_familys_file() -> None:
    for module in (caps, ipc, proc, storage):
        family = module.__name__.rsplit(".", 1)[1]
        assert {SYSCALLS[name].family for name in module.HANDLERS} == {family}


def test_the_control_socket_serves_exactly_its_rows() -> None:
    assert set(control.CONTROL_METHODS) == set(CONTROL_OPS)
    for method in control.CONTROL_METHODS.values():
        assert callable(getattr(control.ControlServer, method))


def test_names_are_unique_and_rows_well_formed() -> None:
    names = [s.name for s in TABLE]
    assert len(names) == len(set(names))
    for s in TABLE:
        assert s.doc and s.family in table.FAMILIES
        assert 0 <= s.fds_in[0] <= s.fds_in[1] <= table.MAX_FDS
        if s.handle_rights is not None:
            assert s.handle_rights[0] in s.names


def _exo_std_calls() -> list[tuple[str, set[str], str]]:
    """(op, keyword names, where) of every ``call("op", ...)`` in exo_std's sources."""
    found = []
    for path in sorted((ROOT / "src" / "exo_std").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "call" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                keywords = {k.arg for k in node.keywords if k.arg is not None} - {"fds"}
                found.append((node.args[0].value, keywords, f"{path.name}:{node.lineno}"))
    return found


def test_every_op_exo_std_sends_is_a_row_with_those_arguments() -> None:
    calls = _exo_std_calls()
    assert len(calls) >= 10  # the scan found them
    for op, keywords, where in calls:
        row = SYSCALLS.get(op)
        assert row is not None, f"{where}: {op!r} is not in the syscall table"
        assert keywords <= row.names, (where, keywords - row.names)
        assert row.required <= keywords, (where, op)


def test_docs_syscalls_md_is_the_generated_text() -> None:
    doc = (ROOT / "docs" / "syscalls.md").read_text()
    assert doc == table.markdown(), \
        "docs/syscalls.md is stale: python -m exo.abi.syscalls --markdown > docs/syscalls.md"


# ------------------------------------------------------------------ validation
def test_a_row_checks_missing_unknown_mistyped_and_out_of_range_arguments() -> None:
    dup = SYSCALLS["duplicate"]
    assert dup.validate({"handle": 5, "rights": "READ"}) == {"handle": 5, "rights": "READ"}
    with pytest.raises(KeyError):
        dup.validate({"handle": 5})
    with pytest.raises(TypeError, match="unknown argument 'x'"):
        dup.validate({"handle": 5, "rights": "READ", "x": 1})
    for bad in ("5", 5.0, True, None, [], {}):
        with pytest.raises(TypeError):
            dup.validate({"handle": bad, "rights": "READ"})
    with pytest.raises(ValueError):
        dup.validate({"handle": 1 << 63, "rights": "READ"})
    with pytest.raises(ValueError):
        dup.validate({"handle": 1, "rights": "R" * 257})
    with pytest.raises(TypeError, match="takes no arguments"):
        SYSCALLS["getpid"].validate({"x": 1})


def test_optional_arguments_take_their_defaults_and_timeouts_are_bounded() -> None:
    opened = SYSCALLS["open"].validate({"name": "storage://a", "rights": "READ",
                                        "create": None})
    assert opened == {"name": "storage://a", "rights": "READ", "create": False,
                      "truncate": False, "append": False}
    recv = SYSCALLS["recv_capability"]
    assert recv.validate({}) == {"timeout": None}
    assert recv.validate({"timeout": 1e300}) == {"timeout": table.MAX_TIMEOUT}
    for bad in (-1, "1", True, float("nan"), float("inf")):
        with pytest.raises(TypeError):
            recv.validate({"timeout": bad})


def test_nested_arguments_are_checked_item_by_item() -> None:
    spawn = SYSCALLS["spawn"]
    ok = spawn.validate({"argv": ["/bin/true"], "caps": [{"handle": 3, "rights": "READ"}]})
    assert ok["channels"] == () and ok["limits"] is None
    with pytest.raises(ValueError):
        spawn.validate({"argv": []})
    with pytest.raises(TypeError, match=r"argv\[1\]"):
        spawn.validate({"argv": ["a", 1]})
    with pytest.raises(KeyError, match=r"caps\[0\]\.rights"):
        spawn.validate({"argv": ["a"], "caps": [{"handle": 3}]})
    with pytest.raises(TypeError, match="unknown argument"):
        spawn.validate({"argv": ["a"], "caps": [{"handle": 3, "rights": "R", "x": 0}]})
    with pytest.raises(ValueError):
        spawn.validate({"argv": ["a"], "channels": [9]})


# ------------------------------------------------------------------ error model
KERNEL_ERROR_MODULES = (abi_errors, caps_errors, sandbox_errors)


def test_every_kernel_exception_class_carries_its_code() -> None:
    classes = [ManifestError]
    for module in KERNEL_ERROR_MODULES:
        classes += [c for _, c in inspect.getmembers(module, inspect.isclass)
                    if issubclass(c, BaseException)]
    for cls in classes:
        assert isinstance(cls.__dict__.get("code", getattr(cls, "code", None)), ErrorCode), cls
    assert caps_errors.CapabilityError is abi_errors.CapabilityError
    assert issubclass(caps_errors.InvalidRights, caps_errors.CapabilityError)


def test_builtin_refusals_are_mapped_and_anything_else_is_internal() -> None:
    assert code_of(FileNotFoundError(2, "x")) == ErrorCode.NO_SUCH_FILE
    assert code_of(OSError(13, "x")) == ErrorCode.PERMISSION
    assert code_of(OSError(24, "x")) == ErrorCode.OS_ERROR
    assert code_of(TimeoutError()) == ErrorCode.TIMEOUT
    assert code_of(LookupError()) == ErrorCode.NOT_FOUND
    assert code_of(KeyError("x")) == ErrorCode.INVALID_ARGUMENT
    assert code_of(TypeError()) == ErrorCode.INVALID_ARGUMENT
    assert code_of(sandbox_errors.ExecFailed("x", 2)) == ErrorCode.EXEC_FAILED
    assert code_of(caps_errors.SpaceFull("handles", 1, "x")) == ErrorCode.QUOTA_EXCEEDED
    assert code_of(ZeroDivisionError()) is None
    assert code_of(RuntimeError()) is None


def test_exo_std_raises_one_class_per_code() -> None:
    classes = [std_errors.error_from_reply("X", "m", int(c)) for c in ErrorCode]
    kinds = [type(e) for e in classes]
    assert len(set(kinds)) == len(ErrorCode)
    for code, exc in zip(ErrorCode, classes, strict=True):
        assert exc.code == code  # type: ignore[attr-defined]
    by_code = {c: type(e) for c, e in zip(ErrorCode, classes, strict=True)}
    # what application code catches today keeps working
    assert issubclass(by_code[ErrorCode.QUOTA_EXCEEDED], std_errors.CapabilityError)
    assert issubclass(by_code[ErrorCode.QUOTA_EXCEEDED], std_errors.ProcessError)
    assert by_code[ErrorCode.PERMISSION] is PermissionError
    assert by_code[ErrorCode.NO_SUCH_FILE] is FileNotFoundError
    for code in (ErrorCode.NOT_FOUND, ErrorCode.TIMEOUT, ErrorCode.EXEC_FAILED,
                 ErrorCode.SANDBOX, ErrorCode.INVALID_MANIFEST):
        assert issubclass(by_code[code], std_errors.ProcessError), code
    for code in (ErrorCode.NO_SUCH_HANDLE, ErrorCode.DENIED, ErrorCode.REVOKED,
                 ErrorCode.INVALID_RIGHTS, ErrorCode.INVALID_NAME,
                 ErrorCode.INSUFFICIENT_RIGHTS):
        assert issubclass(by_code[code], std_errors.CapabilityError), code
    assert type(std_errors.error_from_reply("X", "m", None)) is std_errors.ExoError


def test_exo_std_checks_a_call_against_its_row_before_sending() -> None:
    from exo_std._kernel import call

    with pytest.raises(std_errors.UnknownSyscall):
        call("nosuch")
    with pytest.raises(std_errors.InvalidArgument, match="unknown argument 'hndle'"):
        call("close", hndle=3)
    with pytest.raises(std_errors.InvalidArgument, match="missing argument 'handle'"):
        call("close")
