"""The ``[wasm]`` table: defaults, and refusals of anything past its bounds."""

from __future__ import annotations

from typing import Any

import pytest

from exo.modules import ModuleError
from exo.modules.wasm import DEFAULTS, config, runner_argv


def test_defaults_grant_nothing() -> None:
    got = config("m", {})
    assert got == DEFAULTS and got["imports"] == [] and got["wasi"] is False


@pytest.mark.parametrize(("table", "message"), [
    ("imports", "[wasm] must be a table"),
    ({"import": []}, "unknown [wasm] key 'import'"),
    ({"imports": "exo.log"}, "imports must be a list"),
    ({"imports": ["exo.fs"]}, "imports 'exo.fs', which is not a host function"),
    ({"wasi": 1}, "wasi must be true or false"),
    ({"fuel": 0}, "fuel must be 1.."),
    ({"fuel": 10**12}, "fuel must be 1.."),
    ({"fuel": 1.5}, "fuel must be 1.."),
    ({"memory": 1 << 40}, "memory must be 1.."),
    ({"timeout": 0}, "timeout must be in"),
    ({"timeout": float("nan")}, "timeout must be in"),
    ({"timeout": 60}, "timeout must be in"),
])
def test_refusals(table: Any, message: str) -> None:
    with pytest.raises(ModuleError) as info:
        config("m", {"wasm": table})
    assert message in str(info.value) and str(info.value).startswith("m: refused: ")


def test_the_runner_gets_the_checked_config() -> None:
    argv = runner_argv("/py", "/exo/modules/m/1/main.wasm",
                       {"package": {"name": "m"}, "wasm": {"imports": ["exo.log"]}})
    assert argv[:4] == ["/py", "-m", "exo.modules.wasm_runner", "/exo/modules/m/1/main.wasm"]
    assert '"imports":["exo.log"]' in argv[4]
