"""Builds the compiled hot paths (C11 atomics) that pure Python cannot express.

Everything else about the package lives in pyproject.toml; setuptools needs a
setup.py only to declare C extensions. An extension is built when its source exists.
"""

from pathlib import Path

from setuptools import Extension, setup

_HERE = Path(__file__).parent
_CANDIDATES = {
    "exo.ipc._fring": "src/exo/ipc/_fring.c",
    "exo.mm._pool": "src/exo/mm/_pool.c",
}
_FLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        Extension(name, [src], extra_compile_args=_FLAGS)
        for name, src in _CANDIDATES.items()
        if (_HERE / src).exists()
    ]
)
