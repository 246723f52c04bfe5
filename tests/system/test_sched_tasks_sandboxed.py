"""``exo_std.task`` in a sandboxed app on the host's python3, which has no greenlet of its
own: the kernel shows its greenlet read-only at /run/exo/site and the app's tasks run."""

from __future__ import annotations

from tests.system.helpers import run_app

from exo.kernel.kernel import Kernel
from exo.sandbox.namespace import RUNTIME_SITE
from exo_std import task

APP = """
import os, sys
from exo_std import task

order = []

def worker(n):
    order.append(f"start {n}")
    task.sleep(0.01)            # blocks this task only: the other one runs meanwhile
    order.append(f"end {n}")
    return n * 2

a, b = task.spawn(worker, 1), task.spawn(worker, 20)
print(task.join(a), task.join(b), order[:2])
print(type(sys.modules["greenlet"]).__name__, sys.modules["greenlet"].__file__)
try:
    open(os.path.join(os.path.dirname(sys.modules["greenlet"].__file__), "x"), "w")
except OSError as exc:
    print("write refused", exc.errno)
"""


def test_exo_std_task_runs_in_a_sandboxed_app_on_the_hosts_python(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, APP, "storage://home/demo=READ")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "2 40 ['start 1', 'start 20']"  # both started before either ended
    assert lines[1] == f"module {RUNTIME_SITE}/greenlet/__init__.py"
    assert lines[2].startswith("write refused")  # read-only: EROFS or EACCES


def test_the_site_path_is_the_one_the_sandbox_mounts() -> None:
    assert task.RUNTIME_SITE == RUNTIME_SITE

