from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._support.kernels import booted_kernel

from exo.kernel.kernel import Kernel
from exo.kernel.users import UserDatabase, session_grants
from exo.shell import Session, Shell, Vfs


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    with booted_kernel(tmp_path / "root") as k:
        yield k


@pytest.fixture
def root_shell(kernel: Kernel) -> Shell:
    (kernel.root / "home" / "root").mkdir(parents=True, exist_ok=True)
    return Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()))


@pytest.fixture
def alice(kernel: Kernel) -> Shell:
    """A shell logged in as the normal user alice (password "wonderland")."""
    user = UserDatabase(kernel.root).add("alice", "wonderland")
    (kernel.root / "home" / "alice").mkdir(parents=True)
    session = Session(user.name, user.uid, user.home, session_grants(kernel.root, user))
    return Shell(kernel.api, Vfs(kernel.root, kernel.virtual_trees()), session)
