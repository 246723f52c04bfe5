"""The shell's view of the Exo file tree: Exo paths mapped onto EXO_ROOT.

Exo paths are absolute POSIX paths inside the tree (``/home/root``); they never
resolve above the root, whatever ``..`` or symlinks they contain. ``/proc`` and
``/sys`` are served from the kernel's synthesised trees, not from disk.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from exo.kernel.procfs import VirtualTree

_VIRTUAL = ("proc", "sys")


class VfsError(OSError):
    """A path operation the Exo tree refuses (escape, read-only area)."""


# A plain class, not a dataclass: each @dataclass costs ~1.3 ms at import, on the boot path.
class Entry:
    __slots__ = ("is_dir", "name", "size")

    def __init__(self, name: str, is_dir: bool, size: int) -> None:
        self.name = name
        self.is_dir = is_dir
        self.size = size


class Vfs:
    def __init__(self, root: Path, virtual: dict[str, VirtualTree] | None = None) -> None:
        self.root = root.resolve()
        self.virtual = virtual or {}

    # ------------------------------------------------------------ resolution
    @staticmethod
    def normalize(path: str, cwd: str = "/") -> str:
        joined = path if path.startswith("/") else posixpath.join(cwd, path)
        norm = posixpath.normpath(joined)
        # normpath keeps a leading "//"; and ".." cannot climb above "/".
        return "/" + norm.lstrip("/") if norm != "/" else "/"

    def _virtual(self, exo_path: str) -> tuple[VirtualTree, str] | None:
        parts = exo_path.strip("/").split("/", 1)
        if parts[0] in _VIRTUAL and parts[0] in self.virtual:
            return self.virtual[parts[0]], parts[1] if len(parts) > 1 else ""
        return None

    def host_path(self, exo_path: str) -> Path:
        """Host path of an Exo path; refuses anything that leaves the tree."""
        if self._virtual(exo_path) is not None:
            raise VfsError(f"{exo_path}: synthesised by the kernel, read-only")
        host = (self.root / exo_path.lstrip("/")).resolve()
        if host != self.root and self.root not in host.parents:
            raise VfsError(f"{exo_path}: outside the Exo tree")
        return host

    # ------------------------------------------------------------ queries
    def exists(self, p: str) -> bool:
        v = self._virtual(p)
        if v is not None:
            return v[0].exists(v[1])
        try:
            return self.host_path(p).exists()
        except VfsError:
            return False

    def is_dir(self, p: str) -> bool:
        v = self._virtual(p)
        if v is not None:
            return v[0].is_dir(v[1])
        try:
            return self.host_path(p).is_dir()
        except VfsError:
            return False

    def listdir(self, p: str) -> list[Entry]:
        v = self._virtual(p)
        if v is not None:
            tree, rel = v
            if not tree.exists(rel):
                raise FileNotFoundError(f"{p}: no such file or directory")
            return [
                Entry(name, tree.is_dir(posixpath.join(rel, name)), 0)
                for name in tree.listdir(rel)
            ]
        host = self.host_path(p)
        if not host.exists():
            raise FileNotFoundError(f"{p}: no such file or directory")
        if not host.is_dir():
            raise NotADirectoryError(f"{p}: not a directory")
        out = []
        for child in sorted(host.iterdir()):
            try:
                st = child.stat()
                out.append(Entry(child.name, child.is_dir(), st.st_size))
            except OSError:  # a dangling link: show it, size unknown
                out.append(Entry(child.name, False, 0))
        return out

    def read_bytes(self, p: str) -> bytes:
        v = self._virtual(p)
        if v is not None:
            return v[0].read(v[1]).encode()
        host = self.host_path(p)
        if host.is_dir():
            raise IsADirectoryError(f"{p}: is a directory")
        if not host.exists():
            raise FileNotFoundError(f"{p}: no such file or directory")
        return host.read_bytes()

    def iter_chunks(self, p: str, size: int = 65536) -> Iterator[bytes]:
        v = self._virtual(p)
        if v is not None:
            yield self.read_bytes(p)
            return
        host = self.host_path(p)
        if host.is_dir():
            raise IsADirectoryError(f"{p}: is a directory")
        if not host.exists():
            raise FileNotFoundError(f"{p}: no such file or directory")
        with open(host, "rb") as fh:
            while chunk := fh.read(size):
                yield chunk

    # ------------------------------------------------------------ mutations
    def mkdir(self, p: str, parents: bool = False) -> None:
        self.host_path(p).mkdir(parents=parents, exist_ok=parents)

    def remove(self, p: str, recursive: bool = False) -> None:
        host = self.host_path(p)
        if host == self.root:
            raise VfsError("/: refusing to remove the root of the Exo tree")
        if host.is_dir() and not host.is_symlink():
            if not recursive:
                raise IsADirectoryError(f"{p}: is a directory (use rm -r)")
            import shutil

            shutil.rmtree(host)
        elif host.exists() or host.is_symlink():
            host.unlink()
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")

    def copy(self, src: str, dst: str, recursive: bool = False) -> None:
        import shutil  # lazily: shutil pulls bz2 and lzma, which boot does not need

        s, d = self.host_path(src), self.host_path(dst)
        if d.is_dir():
            d = d / s.name
        if s.is_dir():
            if not recursive:
                raise IsADirectoryError(f"{src}: is a directory (use cp -r)")
            shutil.copytree(s, d, symlinks=True)
        elif not s.exists():
            raise FileNotFoundError(f"{src}: no such file or directory")
        else:
            shutil.copy2(s, d)

    def move(self, src: str, dst: str) -> None:
        s, d = self.host_path(src), self.host_path(dst)
        if not s.exists():
            raise FileNotFoundError(f"{src}: no such file or directory")
        if d.is_dir():
            d = d / s.name
        os.replace(s, d)

    def open_write(self, p: str, append: bool = False) -> int:
        host = self.host_path(p)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        return os.open(host, flags | os.O_CLOEXEC, 0o644)

    def open_read(self, p: str) -> int:
        v = self._virtual(p)
        if v is not None:
            # A synthesised file is materialised into a memfd the reader consumes.
            fd = os.memfd_create("exo-virtual", os.MFD_CLOEXEC)
            os.write(fd, self.read_bytes(p))
            os.lseek(fd, 0, os.SEEK_SET)
            return fd
        host = self.host_path(p)
        return os.open(host, os.O_RDONLY | os.O_CLOEXEC)
