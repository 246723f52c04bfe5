"""Builds the compiled parts pure Python cannot express or cannot afford.

Everything else about the package lives in pyproject.toml; setuptools needs a setup.py only
to declare them: the C extensions (C11 atomics for the Fusion Rings and the pool), and
``exo-stage2``, the sandbox's last step before exec, a program rather than a module (it runs
inside every sandbox, where starting an interpreter would cost ~15 ms per spawn). Each is
built when its source exists.
"""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import LinkError

_HERE = Path(__file__).parent
# name -> sources; the first is the module's own file (built only when it exists).  The
# ring's binding links the protocol (fring.c: no Python, shared with C programs).
_CANDIDATES = {
    "exo.ipc._fring": ["src/exo/ipc/_fring.c", "src/exo/ipc/fring.c"],
    "exo.ipc._bench": ["src/exo/ipc/_bench.c"],
    "exo._sched": ["src/exo/_sched.c"],
    "exo.mm._pool": ["src/exo/mm/_pool.c"],
}
_DEPENDS = {"exo.ipc._fring": ["src/exo/ipc/fring.h"]}
# Link-time optimisation lets the compiler inline the protocol's hot calls (publish,
# reserve, consume...) into the binding across the two files, as when they were one
# file; hidden visibility keeps the protocol's symbols private to the extension (only
# PyInit__fring is exported), so nothing forces an out-of-line copy.
_LTO = {"exo.ipc._fring": ["-flto", "-fvisibility=hidden"]}
_FLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
_STAGE2 = "src/exo/sandbox/_stage2.c"


class BuildExtAndStage2(build_ext):
    """``build_ext`` that also links ``exo/sandbox/exo-stage2`` with the same compiler."""

    def run(self) -> None:
        super().run()
        if not (_HERE / _STAGE2).exists():
            return
        if self.inplace or getattr(self, "editable_mode", False):
            out_dir = _HERE / "src" / "exo" / "sandbox"
        else:
            out_dir = Path(self.build_lib) / "exo" / "sandbox"
        objects = self.compiler.compile([_STAGE2], output_dir=self.build_temp,
                                        extra_postargs=_FLAGS)
        # Linked statically where the C library allows it: the zygote execs it once per
        # command (its spare), and without the dynamic loader's work an exec and exit
        # cost ~0.2 ms less CPU (0.7 ms less below the kernel per powerbox pipeline,
        # measured). Dynamically when there is no static libc.
        try:
            self.compiler.link_executable(objects, "exo-stage2", output_dir=str(out_dir),
                                          extra_postargs=["-static"])
        except LinkError:
            self.compiler.link_executable(objects, "exo-stage2", output_dir=str(out_dir))


setup(
    cmdclass={"build_ext": BuildExtAndStage2},
    ext_modules=[
        Extension(name, srcs, depends=_DEPENDS.get(name, []),
                  extra_compile_args=_FLAGS + _LTO.get(name, []),
                  extra_link_args=_LTO.get(name, []) + (["-O2"] if name in _LTO else []))
        for name, srcs in _CANDIDATES.items()
        if (_HERE / srcs[0]).exists()
    ],
)
