"""The Exo shell: parser, built-in commands, pipelines and the interactive prompt."""

from exo.shell.core import Shell
from exo.shell.session import Session, ShellExit
from exo.shell.vfs import Vfs, VfsError

__all__ = ["Session", "Shell", "ShellExit", "Vfs", "VfsError"]
