"""The shell's view of the Exo file tree: Exo paths mapped onto EXO_ROOT.

Exo paths are absolute POSIX paths inside the tree (``/home/root``); they never
resolve above the root, whatever ``..`` or symlinks they contain. ``/proc`` and
``/sys`` are served from the kernel's synthesised trees, not from disk.

The shell runs as root and apps write in the same tree, so every operation is done on
descriptors: a path is resolved once, by the Linux kernel, from a descriptor of the tree's
root with ``openat2`` (``exo.kernel.beneath.STRICT``: beneath the root, and no symbolic
link followed anywhere on the path), and the operation then works on the descriptor or on
one name relative to its parent's descriptor (``*at()`` calls). Resolving a string and
reopening it later would let an app swap a file for a symlink in between and turn
``echo x > /home/demo/notes.txt`` into a root write anywhere on the host; and following a
link an app planted *inside* the tree would make the operator its deputy all the same
(``echo x > /home/demo/notes.txt`` writing the Exo ``/etc/passwd``, ``cd`` into a link to
``/`` handing the next program the whole tree). So the shell shows links (``ls``) and
removes them (``rm``) but never goes through one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
from pathlib import Path

from exo._umask import DEFAULT_UMASK, process_umask
from exo.kernel import beneath, diskreserve
from exo.sandbox.namespace import instance_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from exo.kernel.procfs import VirtualTree
    from exo.shell.sink import FileSink

_VIRTUAL = ("proc", "sys")
#: The installed packages' launchers: the package store's link, resolved (_package_bin).
PACKAGE_BIN = "/exo/bin"
_CHUNK = 1 << 20
#: The most ``read_bytes`` reads (what a builtin takes whole: scripts, manifests).
MAX_WHOLE = 16 << 20
#: How deep the builtin ``cp -r`` and ``rm -r`` go: they hold a descriptor (two for cp)
#: per level in the kernel. A user's 1,500-deep tree ended them in "internal error" (the
#: recursion limit); any depth can hold the kernel's descriptors. Deeper is the host's
#: programs' work, in the user's own sandbox (``/usr/bin/rm -r``).
MAX_TREE_DEPTH = 256
#: The most entries a listing holds (``ls``, a glob, tab completion): each is a stat and
#: an object in the kernel. A directory of a million names took ~150 MB and a million
#: stats for one ``ls`` or ``echo *``; beyond this the host's ``/usr/bin/ls`` (the
#: powerbox: the user's own sandbox) lists any number.
MAX_LISTING = 100_000
#: ``/dev/NAME`` for these is the host's device, whatever the tree holds there (as every
#: sandboxed program's /dev: exo.sandbox.namespace), for every user: ``2>/dev/null``.
#: (``/dev/stdin``, ``/dev/stdout`` and ``/dev/stderr`` are the command's own streams:
#: exo.shell.core's redirections.) Never ``tty``: a builtin runs in the kernel, whose
#: terminal is the console's, and a user's ``cp /dev/tty ~/keys &`` read the next
#: person's login there after logging out (a hostile review, 2026-12-04). A program's
#: /dev/tty is its own terminal's node (exo.sandbox).
DEVICES = ("null", "zero", "random", "urandom")
STREAMS = ("stdin", "stdout", "stderr")


class VfsError(OSError):
    """A path operation the Exo tree refuses (escape, read-only area)."""


# A plain class, not a dataclass: each @dataclass costs ~1.3 ms at import, on the boot path.
class Entry:
    """One name of a directory. ``link``: a symbolic link's own text (read, never
    followed: what it leads to is looked up from the tree, inside it only)."""

    __slots__ = ("is_dir", "link", "mode", "mtime", "name", "size")

    def __init__(self, name: str, is_dir: bool, size: int, link: str | None = None,
                 mode: int = 0, mtime: float = 0.0) -> None:
        self.name = name
        self.is_dir = is_dir
        self.size = size
        self.link = link
        #: ``st_mode`` and ``st_mtime`` (0: synthesised, not a file's)
        self.mode = mode
        self.mtime = mtime


class Vfs:
    def __init__(self, root: Path, virtual: dict[str, VirtualTree] | None = None) -> None:
        self.root = root.resolve()
        self.virtual = virtual or {}
        # A user's session: (Exo path, "read" | "write" | "list") -> raises PermissionError
        self.guard: Callable[[str, str], None] | None = None
        #: The disk reserve in bytes, instead of exo.kernel.diskreserve's (tests).
        self.min_free: int | None = None
        #: Whose ``/tmp`` ``/tmp`` is (``exo.kernel.tree.instance_path``); None: the tree's.
        self.instance: str | None = None
        #: The shell's process substitutions (``<(LIST)``): ``/dev/fd/N`` -> its pipe's end,
        #: the kernel's descriptor N, opened again through ``/proc/self/fd`` as a device
        #: is; only those: any other ``/dev/fd/N`` is a name in the tree, never a kernel fd.
        self.pipes: dict[str, int] = {}
        #: The shell's ``umask``: the mode bits a file or directory it creates is without.
        self.umask = DEFAULT_UMASK
        #: The shell's ``ulimit -f`` in bytes: how large a redirection's file may grow.
        self.max_file: int | None = None

    def own(self) -> Vfs:
        """The same tree, for one shell: its own ``umask`` and process substitutions."""
        return self.restricted(self.guard, self.instance)

    def restricted(self, guard: Callable[[str, str], None] | None,
                   instance: str | None = None) -> Vfs:
        """The same tree seen through ``guard``: a user's shell reads, lists and writes
        only what the session's capabilities name (``Session.check_path``), and its
        ``/tmp`` is user ``instance``'s own, as the kernel resolves it for the user's
        processes."""
        view = Vfs.__new__(Vfs)
        view.root, view.virtual, view.guard = self.root, self.virtual, guard
        view.min_free = self.min_free
        view.instance = instance
        view.pipes = {}
        view.umask = DEFAULT_UMASK
        view.max_file = None
        return view

    def _created(self, fd: int, mode: int) -> None:
        """Give what was just created (``fd``) ``mode`` less the shell's umask, where
        that is not the kernel's own (which the creation applied)."""
        if self._masked():
            os.fchmod(fd, mode & ~self.umask)

    def _masked(self) -> bool:
        return self.umask != process_umask()

    def _check(self, exo_path: str, mode: str) -> None:
        if self.guard is not None and self._virtual(exo_path) is None and \
                self.device(exo_path) is None:
            self.guard(self.normalize(exo_path), mode)

    def device(self, exo_path: str) -> str | None:
        """The host device node ``exo_path`` names (``/dev/null``...; a process
        substitution's pipe: ``pipes``), else None."""
        norm = self.normalize(exo_path)
        if norm.startswith("/dev/fd/") and (pipe := self.pipes.get(norm)) is not None:
            return f"/proc/self/fd/{pipe}"
        head, name = posixpath.split(norm)
        return f"/dev/{name}" if head == "/dev" and name in DEVICES else None

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

    def _open(self, exo_path: str, flags: int, mode: int = 0o644) -> int:
        """A descriptor of ``exo_path`` resolved beneath the tree (VfsError if it leaves)."""
        if self._virtual(exo_path) is not None:
            raise VfsError(f"{exo_path}: synthesised by the kernel, read-only")
        device = self.device(exo_path)
        if device is not None:  # never created, truncated or made a terminal's owner
            flags &= ~(os.O_CREAT | os.O_TRUNC | os.O_EXCL | os.O_NONBLOCK)
            return os.open(device, flags | os.O_CLOEXEC | os.O_NOCTTY)
        if flags & os.O_CREAT and self.normalize(exo_path).startswith("/dev/"):
            # (`> /dev/tty` made a file of the tree; /dev holds its devices alone)
            raise VfsError(f"{exo_path}: no such device")
        if self.guard is not None and not flags & os.O_PATH:
            write = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            self._check(exo_path, "write" if write else "list" if flags & os.O_DIRECTORY
                        else "read")
        # The root itself comes from configuration, never from an app: opening it by name
        # is safe; everything below it is resolved from this descriptor.
        try:
            root = beneath.open_root(self.root)
        except OSError as exc:  # (EMFILE...): never the tree's host path in the message
            raise OSError(exc.errno, exc.strerror) from None
        try:
            rel = instance_path(self._package_bin(root, self.normalize(exo_path)).lstrip("/"),
                                self.instance) or "."
            return beneath.openat2(root, rel, flags, mode, beneath.STRICT)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise VfsError(f"{exo_path}: outside the Exo tree") from None
            if exc.errno == errno.ELOOP:
                raise VfsError(f"{exo_path}: a symbolic link is on the path; the shell does "
                               "not follow links (an app may have planted it)") from None
            if exc.errno == errno.ENOENT:
                raise FileNotFoundError(f"{exo_path}: no such file or directory") from None
            if exc.errno == errno.ENOTDIR:
                raise NotADirectoryError(f"{exo_path}: not a directory"
                                         ) from None
            raise OSError(exc.errno, exc.strerror, exo_path) from None
        finally:
            os.close(root)

    @staticmethod
    def _package_bin(root: int, norm: str) -> str:
        """``/exo/bin[/...]`` as the package store's current generation's ``bin``: the
        two links the store keeps (``exo/bin`` → ``../var/lib/pkg/current/bin``, ``current``
        → ``generations/N``) read beneath the root and taken only in exactly that form,
        never followed as links. Any other path, or links of any other form, unchanged
        (and then refused, as every link)."""
        if norm != PACKAGE_BIN and not norm.startswith(PACKAGE_BIN + "/"):
            return norm
        try:
            exo = beneath.openat2(root, "exo", os.O_PATH | os.O_DIRECTORY, 0, beneath.STRICT)
            try:
                first = os.readlink("bin", dir_fd=exo)
            finally:
                os.close(exo)
            state = beneath.openat2(root, "var/lib/pkg", os.O_PATH | os.O_DIRECTORY, 0,
                                    beneath.STRICT)
            try:
                current = os.readlink("current", dir_fd=state)
            finally:
                os.close(state)
        except OSError:
            return norm
        number = current.removeprefix("generations/")
        if first != "../var/lib/pkg/current/bin" or not number.isdigit():
            return norm
        return f"/var/lib/pkg/generations/{number}/bin" + norm[len(PACKAGE_BIN):]

    def _parent(self, exo_path: str) -> tuple[int, str]:
        """(descriptor of the parent directory, last name) of ``exo_path``."""
        norm = self.normalize(exo_path)
        if norm == "/":
            raise VfsError("/: the root of the Exo tree")
        self._check(norm, "write")  # what is done through a parent changes the name
        head, name = posixpath.split(norm)
        return self._open(head, os.O_PATH | os.O_DIRECTORY), name

    def _open_file(self, exo_path: str, flags: int, mode: int = 0o644) -> int:
        """Open a regular file (or directory) without blocking on a FIFO or touching a
        device: O_NONBLOCK, refused unless regular or a directory, then blocking again."""
        fd = self._open(exo_path, flags | os.O_NONBLOCK | os.O_NOCTTY, mode)
        if self.device(exo_path) is not None:
            return fd  # (opened blocking: a read of /dev/tty waits for a line)
        try:
            st = os.fstat(fd)
            if not beneath.is_plain(st.st_mode):
                raise VfsError(f"{exo_path}: {beneath.kind_name(st.st_mode)}, not a "
                               "regular file")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _read_fd(self, exo_path: str) -> int:
        fd = self._open_file(exo_path, os.O_RDONLY)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            raise IsADirectoryError(f"{exo_path}: is a directory")
        return fd

    def host_path(self, exo_path: str) -> Path:
        """Host path of an Exo path; refuses anything that leaves the tree.

        For *naming* things (a grant, a program to run); the kernel re-resolves it without
        links before using it. File operations here never go through it.
        """
        norm = self.normalize(exo_path)
        missing: list[str] = []
        while True:
            try:
                fd = self._open(norm, os.O_PATH)
            except FileNotFoundError:
                if norm == "/":
                    raise
                norm, name = posixpath.split(norm)
                missing.insert(0, name)  # not there: nothing to follow, taken as spelt
                continue
            try:
                real = Path(os.readlink(f"/proc/self/fd/{fd}"))
            finally:
                os.close(fd)
            return real.joinpath(*missing)

    # ------------------------------------------------------------ queries
    def hidden(self, p: str) -> bool:
        """Whether the session holds nothing that lets it see ``p`` (a name in another
        user's home): it then does not exist for the queries below, whether it does or
        not, as a stat of it fails the same way either way on Linux (EACCES)."""
        if self.guard is None or self.normalize(p) == "/dev":
            return False
        try:
            self._check(p, "list")
        except PermissionError:
            return True
        return False

    def exists(self, p: str) -> bool:
        if self.pipes and self.device(p) is not None:
            return True
        v = self._virtual(p)
        if v is not None:
            return v[0].exists(v[1])
        if self.hidden(p):
            return False
        try:
            os.close(self._open(p, os.O_PATH))
        except OSError:
            return False
        return True

    def is_executable(self, p: str) -> bool:
        """A regular file the kernel may execute, resolved beneath the tree without links
        (one ``openat2``; a name that is not there costs no walk up, as ``host_path``'s)."""
        if self._virtual(p) is not None or self.hidden(p):
            return False
        try:
            fd = self._open(p, os.O_PATH)
        except OSError:
            return False
        try:
            return stat.S_ISREG(os.fstat(fd).st_mode) and \
                os.access(f"/proc/self/fd/{fd}", os.X_OK)
        finally:
            os.close(fd)

    def is_dir(self, p: str) -> bool:
        v = self._virtual(p)
        if v is not None:
            return v[0].is_dir(v[1])
        if self.hidden(p):
            return False
        try:
            os.close(self._open(p, os.O_PATH | os.O_DIRECTORY))
        except OSError:
            return False
        return True

    def check_list(self, p: str) -> None:
        """What ``listdir`` refuses for ``p`` (not a directory, not the session's to
        list), raised, without reading it (``cd``)."""
        if self.normalize(p) == "/dev":
            return
        v = self._virtual(p)
        if v is not None:
            if not v[0].exists(v[1]):
                raise FileNotFoundError(f"{p}: no such file or directory")
            return
        os.close(self._open(p, os.O_RDONLY | os.O_DIRECTORY))

    def entry(self, p: str) -> Entry | None:
        """What ``listdir`` of ``p``'s directory shows for ``p`` (a link as a link, never
        followed), or None when there is no such name; without listing the directory.
        Refused as ``listdir`` of that directory would be."""
        norm = self.normalize(p)
        head, name = posixpath.split(norm)
        if not name:
            return None
        if head == "/dev":
            return Entry(name, False, 0) if name in (*DEVICES, *STREAMS) else None
        v = self._virtual(norm)
        if v is not None:
            tree, rel = v
            return Entry(name, tree.is_dir(rel), 0) if tree.exists(rel) else None
        fd = self._open(head, os.O_RDONLY | os.O_DIRECTORY)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                return Entry(name, False, 0, os.readlink(name, dir_fd=fd))
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)
        return Entry(name, stat.S_ISDIR(st.st_mode), st.st_size, None, st.st_mode,
                     st.st_mtime)

    def listdir(self, p: str) -> list[Entry]:
        if self.normalize(p) == "/dev":
            return [Entry(name, False, 0) for name in sorted((*DEVICES, *STREAMS))]
        v = self._virtual(p)
        if v is not None:
            tree, rel = v
            if not tree.exists(rel):
                raise FileNotFoundError(f"{p}: no such file or directory")
            return [
                Entry(name, tree.is_dir(posixpath.join(rel, name)), 0)
                for name in tree.listdir(rel)
            ]
        fd = self._open(p, os.O_RDONLY | os.O_DIRECTORY)
        try:
            found = sorted((d.name, d.is_symlink(), d.stat(follow_symlinks=False))
                           for d in _scan(fd, p))
            texts = {}
            for name, link, _ in found:
                if link:  # the link's own text, from the pinned directory: not followed
                    with contextlib.suppress(OSError):
                        texts[name] = os.readlink(name, dir_fd=fd)
        finally:
            os.close(fd)
        out = []
        for name, link, st in found:
            if link:  # shown as what it leads to, if that is inside the tree
                try:
                    target = self._open(posixpath.join(self.normalize(p), name), os.O_PATH)
                    try:
                        st = os.fstat(target)
                    finally:
                        os.close(target)
                except OSError:  # dangling, or leading out: show it, size unknown
                    out.append(Entry(name, False, 0, texts.get(name, "?")))
                    continue
                out.append(Entry(name, stat.S_ISDIR(st.st_mode), st.st_size,
                                 texts.get(name, "?"), st.st_mode, st.st_mtime))
                continue
            out.append(Entry(name, stat.S_ISDIR(st.st_mode), st.st_size, None, st.st_mode,
                             st.st_mtime))
        return out

    def read_bytes(self, p: str, limit: int = MAX_WHOLE) -> bytes:
        """A whole file (a script, a manifest, a policy): a regular file of at most
        ``limit`` bytes, never a device (``source /dev/zero`` grew the kernel by GiBs)."""
        v = self._virtual(p)
        if v is not None:
            return v[0].read(v[1]).encode()
        if self.device(p) is not None:
            raise VfsError(f"{p}: a device, not a file")
        data = bytearray()
        for chunk in self.iter_chunks(p):
            data += chunk
            if len(data) > limit:
                raise VfsError(f"{p}: larger than {limit >> 20} MiB")
        return bytes(data)

    def iter_chunks(self, p: str, size: int = 65536) -> Iterator[bytes]:
        v = self._virtual(p)
        if v is not None:
            yield self.read_bytes(p)
            return
        fd = self._read_fd(p)
        try:
            while chunk := os.read(fd, size):
                yield chunk
        finally:
            os.close(fd)

    # ------------------------------------------------------------ mutations
    def mkdir(self, p: str, parents: bool = False) -> None:
        if not parents:
            pfd, name = self._parent(p)
            try:
                self._name_fits(pfd, p)
                os.mkdir(name, 0o777, dir_fd=pfd)
                self._mkdir_mode(pfd, name)
            finally:
                os.close(pfd)
            return
        done = "/"
        for name in self.normalize(p).strip("/").split("/"):
            if not name:
                continue
            if not self.is_dir(posixpath.join(done, name)):
                self._check(posixpath.join(done, name), "write")
            pfd = self._open(done, os.O_PATH | os.O_DIRECTORY)
            try:
                self._name_fits(pfd, posixpath.join(done, name))
                os.mkdir(name, 0o777, dir_fd=pfd)
                self._mkdir_mode(pfd, name)
            except FileExistsError:
                if not self.is_dir(posixpath.join(done, name)):
                    raise
            finally:
                os.close(pfd)
            done = posixpath.join(done, name)

    def remove(self, p: str, recursive: bool = False) -> None:
        if self.normalize(p) == "/":
            raise VfsError("/: refusing to remove the root of the Exo tree")
        pfd, name = self._parent(p)
        try:
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                raise FileNotFoundError(f"{p}: no such file or directory") from None
            if stat.S_ISDIR(st.st_mode):
                if not recursive:
                    raise IsADirectoryError(f"{p}: is a directory (use rm -r)")
                _remove_tree(pfd, name, p)
            else:
                os.unlink(name, dir_fd=pfd)
        finally:
            os.close(pfd)

    def copy(self, src: str, dst: str, recursive: bool = False) -> None:
        self._check(src, "read")  # a directory is copied through descriptors below it
        if self.device(src) is not None:  # endless, and a copy is not interruptible
            raise VfsError(f"{src}: a device, not a file")
        if not self.exists(src):
            raise FileNotFoundError(f"{src}: no such file or directory")
        if self.is_dir(dst):
            dst = posixpath.join(self.normalize(dst), posixpath.basename(self.normalize(src)))
        if self.is_dir(src):
            if not recursive:
                raise IsADirectoryError(f"{src}: is a directory (use cp -r)")
            if _within(self.normalize(dst), self.normalize(src)):  # (it copied 256 levels)
                raise VfsError(f"cannot copy a directory, '{src}', into itself, '{dst}'")
            pfd, name = self._parent(dst)
            try:
                s = self._open(src, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    _copy_into_new_dir(s, name, pfd, self.min_free, src)
                except (TreeTooDeep, ListingTooLong):  # refused: what was copied goes again
                    with contextlib.suppress(OSError):
                        _remove_tree(pfd, name, dst)
                    raise
                finally:
                    os.close(s)
            finally:
                os.close(pfd)
            return
        s = self._read_fd(src)
        try:
            if not self.exists(dst):
                self._room_for_name(dst)
            d = self._open_file(dst, os.O_WRONLY | os.O_CREAT)
            try:
                # Truncated only once known to be another file: `cp a a` emptied it.
                one, other = os.fstat(s), os.fstat(d)
                if (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino):
                    raise VfsError(f"'{src}' and '{dst}' are the same file")
                os.ftruncate(d, 0)
                _copy_file(s, d, self.min_free)
            finally:
                os.close(d)
        finally:
            os.close(s)

    def move(self, src: str, dst: str) -> None:
        spfd, sname = self._parent(src)
        try:
            try:
                os.stat(sname, dir_fd=spfd, follow_symlinks=False)
            except FileNotFoundError:
                raise FileNotFoundError(f"{src}: no such file or directory") from None
            if self.is_dir(dst):
                dst = posixpath.join(self.normalize(dst), sname)
            if _within(self.normalize(dst), self.normalize(src)) and \
                    self.normalize(dst) != self.normalize(src):  # (rename said EINVAL)
                raise VfsError(f"cannot move '{src}' to a subdirectory of itself, '{dst}'")
            dpfd, dname = self._parent(dst)
            try:
                os.rename(sname, dname, src_dir_fd=spfd, dst_dir_fd=dpfd)
            finally:
                os.close(dpfd)
        finally:
            os.close(spfd)

    def _mkdir_mode(self, parent: int, name: str) -> None:
        """A directory just made: its mode as the shell's umask says (opened with no
        link followed: the name is the one just made, or nothing is changed)."""
        if not self._masked():
            return
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=parent)
        try:
            self._created(fd, 0o777)
        finally:
            os.close(fd)

    def touch(self, p: str) -> None:
        """Create ``p`` if missing, else set its times to now (through its descriptor)."""
        self._check(p, "write")
        try:
            fd = self._open(p, os.O_PATH)
        except FileNotFoundError:
            self._room_for_name(p)
            try:
                fd = self._open_file(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return  # (made meanwhile, by another: as new as a touch makes it)
            try:
                self._created(fd, 0o666)
            finally:
                os.close(fd)
            return
        try:
            os.utime(f"/proc/self/fd/{fd}")  # our own descriptor: exactly that inode
        finally:
            os.close(fd)

    def _room_for_name(self, p: str) -> None:
        """ENOSPC when a new name ``p`` would take the disk reserve (exo.kernel.diskreserve)."""
        pfd, _ = self._parent(p)
        try:
            self._name_fits(pfd, p)
        finally:
            os.close(pfd)

    def _name_fits(self, parent: int, p: str) -> None:
        """``_room_for_name`` with the parent directory's descriptor at hand."""
        try:
            diskreserve.check(parent, 0, names=1, min_free=self.min_free)
        except diskreserve.NoRoom:
            raise diskreserve.NoRoom(errno.ENOSPC, f"{p}: {diskreserve.NO_ROOM}") from None

    def open_write(self, p: str, append: bool = False) -> int:
        """The file's own descriptor, for the kernel's own writes (a shell's history).
        A command's output goes through ``open_sink``."""
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        if not self._masked() or self.device(p) is not None:
            return self._open_file(p, flags)
        try:  # made here: its mode is the shell's umask's
            fd = self._open_file(p, flags | os.O_EXCL, 0o666)
        except FileExistsError:
            return self._open_file(p, flags)
        self._created(fd, 0o666)
        return fd

    def open_sink(self, p: str, append: bool = False, *,
                  name: str = "") -> tuple[int, FileSink | None]:
        """Where a command writes its output into ``p`` (``>``, ``>>``): a pipe the kernel
        drains into the file above the disk reserve (``exo.shell.sink``), with its sink;
        a device (``/dev/null``) as it is, with none. ``name``: the path as typed."""
        from exo.shell.sink import FileSink

        if self.device(p) is None and not self.exists(p):
            self._room_for_name(p)
        fd = self.open_write(p, append)
        if self.device(p) is not None:
            return fd, None
        try:
            sink = FileSink(fd, append=append, name=name or p, min_free=self.min_free,
                            max_size=self.max_file)
        except BaseException:
            os.close(fd)
            raise
        return sink.fd, sink

    def open_read(self, p: str) -> int:
        v = self._virtual(p)
        if v is not None:
            # A synthesised file is materialised into a memfd the reader consumes.
            fd = os.memfd_create("exo-virtual", os.MFD_CLOEXEC)
            os.write(fd, self.read_bytes(p))
            os.lseek(fd, 0, os.SEEK_SET)
            return fd
        # Never a directory: `prog < DIR` handed a program a descriptor of the host's
        # directory, opened by the kernel (a hostile review: Landlock stopped
        # /proc/self/fd/0/.. from reaching another home, but it may be missing here).
        return self._read_fd(p)


def _copy_file(src: int, dst: int, min_free: int | None = None) -> None:
    """Data, permission bits and times of ``src`` into ``dst`` (as ``cp`` / copy2), above
    the disk reserve (``min_free``: its size, instead of the default)."""
    while chunk := os.read(src, _CHUNK):
        diskreserve.check(dst, len(chunk), min_free=min_free)
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]
    st = os.fstat(src)
    os.fchmod(dst, stat.S_IMODE(st.st_mode) & 0o1777)  # never set-id bits on a copy
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ListingTooLong(VfsError):
    """A directory of more than ``MAX_LISTING`` entries."""

    def __init__(self, p: str, hint: str) -> None:
        super().__init__(f"{p}: more than {MAX_LISTING} entries ({hint})")


def _within(path: str, top: str) -> bool:
    """Whether normalised Exo path ``path`` is ``top`` or below it (the shell follows no
    link, so the names say it)."""
    return path == top or path.startswith(top.rstrip("/") + "/")


def _scan(fd: int, p: str, hint: str = "the host's /usr/bin/ls lists any number",
          ) -> list[os.DirEntry[str]]:
    """The entries of the directory ``fd`` (``p``: its path, for the error), at most
    ``MAX_LISTING`` of them: every walk of the builtins reads a directory whole into the
    kernel."""
    found: list[os.DirEntry[str]] = []
    with os.scandir(fd) as it:
        for d in it:
            if len(found) == MAX_LISTING:
                raise ListingTooLong(p, hint)
            found.append(d)
    return found


#: Where a tree too big for the builtins' walks goes instead.
_HOST_WALKS = "the host's programs go further: /usr/bin/cp -r, /usr/bin/rm -r"


class TreeTooDeep(VfsError):
    """A directory tree deeper than ``MAX_TREE_DEPTH`` below what a builtin was given."""

    def __init__(self, top: str) -> None:
        super().__init__(f"{top}: more than {MAX_TREE_DEPTH} levels deep (the host's "
                         "programs go deeper: /usr/bin/cp -r, /usr/bin/rm -r)")


def _remove_tree(parent: int, name: str, top: str, depth: int = 0) -> None:
    """Remove the directory ``name`` of ``parent`` and everything below it, one name at a
    time relative to descriptors: links are removed, never followed. ``top``: the path as
    given, for TreeTooDeep. (shutil.rmtree walks the same way, but to any depth.)"""
    if depth > MAX_TREE_DEPTH:
        raise TreeTooDeep(top)
    fd = os.open(name, _DIR_NOFOLLOW, dir_fd=parent)
    try:
        entries = [(d.name, d.is_dir(follow_symlinks=False))
                   for d in _scan(fd, top, _HOST_WALKS)]
        for entry, is_dir in entries:
            if is_dir:
                _remove_tree(fd, entry, top, depth + 1)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def _copy_into_new_dir(src: int, name: str, parent: int, min_free: int | None, top: str,
                       depth: int = 0) -> None:
    """Make directory ``name`` in ``parent`` and copy the directory ``src`` into it."""
    if depth > MAX_TREE_DEPTH:
        raise TreeTooDeep(top)
    diskreserve.check(parent, 0, names=1, min_free=min_free)
    os.mkdir(name, 0o777, dir_fd=parent)
    dst = os.open(name, _DIR_NOFOLLOW, dir_fd=parent)
    try:
        _copy_tree(src, dst, min_free, top, depth)
    finally:
        os.close(dst)


def _copy_tree(src: int, dst: int, min_free: int | None, top: str, depth: int) -> None:
    """Copy the directory ``src`` into the empty directory ``dst``, one name at a time
    relative to the two descriptors: symlinks are copied as links, never followed;
    FIFOs, sockets and devices are skipped (reading a FIFO would block the shell)."""
    entries = [(d.name, d.is_symlink(), d.is_dir(follow_symlinks=False),
                d.is_file(follow_symlinks=False)) for d in _scan(src, top, _HOST_WALKS)]
    for name, link, is_dir, is_file in entries:
        if link:
            diskreserve.check(dst, 0, names=1, min_free=min_free)
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
        elif is_dir:
            s = os.open(name, _DIR_NOFOLLOW, dir_fd=src)
            try:
                _copy_into_new_dir(s, name, dst, min_free, top, depth + 1)
            finally:
                os.close(s)
        elif is_file:
            s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                        dir_fd=src)
            try:
                if not stat.S_ISREG(os.fstat(s).st_mode):  # swapped since the listing
                    continue
                diskreserve.check(dst, 0, names=1, min_free=min_free)
                d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                            | os.O_CLOEXEC, 0o600, dir_fd=dst)
                try:
                    _copy_file(s, d, min_free)
                finally:
                    os.close(d)
            finally:
                os.close(s)
    st = os.fstat(src)
    os.fchmod(dst, stat.S_IMODE(st.st_mode) & 0o1777)
