"""The namespace an Exo process sees: one definition, shared by the sandbox and POSIX-X.

Inside every Exo process the Exo tree is ``/``. What is at each name, later layers over
earlier ones (docs/sandbox.md, "The namespace an Exo process sees"):

1. a fresh, read-only, empty root;
2. the host's system directories (:data:`SYSTEM_DIRS`), read-only at their own names: the
   Exo system's ``/usr``, ``/bin``, ``/sbin`` and ``/lib*`` *are* the host's userland (the
   host plays the hardware and its firmware). The Exo tree's own directories of those
   names hold nothing a process is given; programs Exo installs live under ``/exo``;
3. a synthesised ``/etc``: :data:`ETC_SYNTHESISED` (no password hashes, only root and
   nobody) plus the host's :data:`ETC_FROM_HOST`, read-only (and :data:`ETC_NETWORK` with a
   network capability; :data:`ETC_SYSTEM` and the files a POSIX-X manifest names, checked
   by :func:`check_host_etc`); never :data:`ETC_NEVER`;
4. ``/dev`` with :data:`DEVICES` (and :data:`TTY` when the process has a terminal), a
   fresh ``/proc`` of its own pid namespace, a private ``/tmp``;
5. each ``storage://`` path the process holds, at its Exo path (``storage://home/demo`` is
   ``/home/demo``), read-only or read-write, served through the kernel's revocable FUSE
   export of it. A grant of the Exo tree's ``tmp`` replaces the private ``/tmp``. A grant
   of the whole tree (``storage://``) is shown as its top-level entries (:func:`whole_tree`).

A grant may not land on a name layers 1–4 own (:func:`check_destination`): the root
itself, the system directories, ``/dev``, ``/proc`` and ``/sys``.

Stdlib only and no dataclasses: the kernel imports it while booting.
"""

from __future__ import annotations

import posixpath

from .errors import SandboxError

#: The host's system directories, read-only at their names inside (symlinks stay symlinks).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
#: The device nodes every process has (read and write).
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
#: Added when one of the process's standard descriptors is a terminal.
TTY = "/dev/tty"
#: Names the kernel synthesises or owns inside: never the destination of a grant.
KERNEL_OWNED = ("/dev", "/proc", "/sys")

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
GROUP = "root:x:0:\nnogroup:x:65534:\n"
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
#: /etc files written for the process (no secrets: no hashes, no other users).
ETC_SYNTHESISED = (("/etc/passwd", PASSWD), ("/etc/group", GROUP), ("/etc/hosts", HOSTS),
                   ("/etc/nsswitch.conf", NSSWITCH))
#: The host's /etc files ordinary programs read, read-only (``localtime`` too, kept a link).
ETC_FROM_HOST = ("/etc/ld.so.cache", "/etc/ssl/certs", "/etc/ssl/openssl.cnf",
                 "/etc/ca-certificates.conf", "/etc/mime.types",
                 # man: where its pages are, and groff's local macros
                 "/etc/manpath.config", "/etc/groff",
                 # Debian's /usr/bin/awk, vi, which, pager, editor... are links through it
                 "/etc/alternatives")
#: Only with a network capability.
ETC_NETWORK = ("/etc/resolv.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols")
LOCALTIME = "/etc/localtime"
#: What ``[posix_x] system_dirs`` adds to layer 3 for an unmodified Linux program: the
#: host's /etc files ordinary programs and their loaders read (``cc`` and ``awk`` are
#: links through ``/etc/alternatives``), read-only. Never a secret (:data:`ETC_NEVER`).
ETC_SYSTEM = ("/etc/alternatives", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
              "/etc/services", "/etc/protocols", "/etc/host.conf", "/etc/environment",
              "/etc/timezone", "/etc/papersize", "/etc/magic")
#: Host /etc paths never shown, whatever a manifest asks (``[posix_x] etc``): password
#: hashes, sudo rules, SSH and TLS private keys, the host's user and group lists.
ETC_NEVER = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-",
             "/etc/sudoers", "/etc/sudoers.d", "/etc/ssh", "/etc/ssl/private",
             "/etc/passwd", "/etc/passwd-", "/etc/group", "/etc/group-", "/etc/security",
             "/etc/pam.d", "/etc/krb5.keytab", "/etc/subuid", "/etc/subgid")
#: The private /tmp (and /dev/shm) every process writes to.
PRIVATE_TMP = "/tmp"
#: The Exo runtime (the directory holding the ``exo`` and ``exo_std`` packages, and with
#: them ``exo-stage2``), at this one path in every process whatever the checkout's host
#: path is: a checkout under /tmp or /home would otherwise sit inside a granted Exo path,
#: where its mount point cannot be made. Not an Exo path (``/run`` is never granted).
RUNTIME_SRC = "/run/exo/src"
#: Compiled packages of the runtime's environment that applications may import, each
#: shown read-only at ``RUNTIME_SITE/NAME``: the host's ``/usr/bin/python3`` (which runs
#: sandboxed apps) lacks greenlet, which ``exo_std.task`` needs and finds here. Only these
#: packages, not the whole site-packages (nothing else of the venv shadows the host's).
#: Built for the runtime's CPython; ``exo_std.task`` imports them only on the same minor
#: version. ``exo_std.task.RUNTIME_SITE`` spells the same path (apps cannot import this).
RUNTIME_SITE = "/run/exo/site"
RUNTIME_SITE_PACKAGES = ("greenlet",)


def exo_path(storage_path: str) -> str:
    """Where the ``storage://`` path ``storage_path`` (``home/demo``) is inside: ``/home/demo``."""
    return "/" + storage_path.strip("/")


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


#: Left out when the whole tree (``storage://``) is granted: the synthesised /etc stays
#: (Exo's own holds password hashes: grant its files by name) and so does the kernel's
#: run directory (``/var/run``: its control socket and file-server mounts).
NOT_IN_WHOLE_TREE = ("/etc", "/var")


def whole_tree(top_level: list[str]) -> list[str]:
    """What a grant of the whole Exo tree shows: the Exo paths of its top-level entries
    ``top_level`` (names), except those another layer owns and :data:`NOT_IN_WHOLE_TREE`."""
    shown = []
    for name in sorted(top_level):
        path = exo_path(name)
        if "/" in name or name in ("", ".", ".."):
            continue
        if any(_within(path, owned) for owned in
               (*SYSTEM_DIRS, *KERNEL_OWNED, *NOT_IN_WHOLE_TREE)):
            continue
        shown.append(path)
    return shown


def check_destination(path: str, label: str | None = None) -> str:
    """Refuse a grant whose Exo path is owned by another layer; the normalised path.

    ``label`` names the grant in the error (its capability), else the path does.
    """
    norm = posixpath.normpath(path) if path else "/"
    what = label or norm
    if norm in ("/", "//"):
        raise SandboxError(f"{what}: the whole Exo tree cannot be shown to a process; "
                           "grant the directories it needs")
    for owned in (*SYSTEM_DIRS, *KERNEL_OWNED):
        if _within(norm, owned):
            kind = "the host's read-only system directory" if owned in SYSTEM_DIRS else \
                "synthesised by the kernel"
            raise SandboxError(f"{what}: {owned} inside a process is {kind}; "
                               "it cannot be granted")
    return norm


def check_host_etc(path: str, label: str | None = None) -> str:
    """A host ``/etc`` path a manifest asks to show read-only (``[posix_x] etc``), checked
    against :data:`ETC_NEVER` and the names the namespace synthesises; normalised.

    A name that holds a never-shown path (``/etc`` itself, ``/etc/ssl``) is refused too:
    it would be bound whole."""
    norm = posixpath.normpath(path) if path else ""
    what = label or path
    if not norm.startswith("/etc/") or "\0" in norm:
        raise SandboxError(f"{what}: only files and directories below /etc can be shown "
                           "from the host (the system directories are shown already)")
    for never in ETC_NEVER:
        if _within(norm, never) or _within(never, norm):
            raise SandboxError(f"{what}: {never} is never shown to a process")
    if {".ssh", ".gnupg", "private"} & set(norm.split("/")):
        raise SandboxError(f"{what}: key material is never shown to a process")
    return norm


#: How many entries of a host /etc directory are looked at before it is shown (a directory
#: holding more is refused: name a narrower one).
ETC_DIR_ENTRIES = 4096


def host_etc_source(path: str) -> str:
    """The host path to bind for the checked ``/etc`` name ``path`` (``check_host_etc``).

    What the name leads to is checked too: a link must lead to another allowed /etc name or
    into the system directories, and a directory is refused if anything in it (up to
    :data:`ETC_DIR_ENTRIES` entries) is never shown or looks like a private key
    (``*.key``, ``private``), so that ``/etc/nginx`` cannot bring a TLS key with it."""
    import os

    real = os.path.realpath(path)
    if _within(real, "/etc"):
        check_host_etc(real, f"{path} (leading to {real})")
    elif not any(_within(real, d) for d in SYSTEM_DIRS):
        raise SandboxError(f"{path}: leads to {real}, outside /etc and the system "
                           "directories; never shown")
    if os.path.isdir(real):
        seen = 0
        for top, dirs, files in os.walk(real):
            for name in (*dirs, *files):
                seen += 1
                inside = posixpath.join(top, name)
                if seen > ETC_DIR_ENTRIES:
                    raise SandboxError(f"{path}: more than {ETC_DIR_ENTRIES} entries; "
                                       "name the files the program reads")
                if name.endswith(".key") or name in ("private", ".ssh", ".gnupg") or \
                        any(_within(inside, never) for never in ETC_NEVER):
                    raise SandboxError(f"{path}: holds {inside}, which is never shown to a "
                                       "process; name the files the program reads")
    return real


def check_cwd(cwd: str, visible: list[str]) -> str:
    """The working directory, if the process can see it (``/``, a system directory,
    ``/tmp`` or a path in ``visible``); else one line saying it cannot."""
    norm = posixpath.normpath(cwd)
    if not cwd.startswith("/") or "\0" in cwd:
        raise SandboxError(f"working directory {cwd!r} is not an absolute Exo path")
    if norm == "/" or any(_within(norm, v)
                          for v in (*SYSTEM_DIRS, PRIVATE_TMP, "/etc", *visible)):
        return norm
    raise SandboxError(f"working directory {norm} is not visible to the process "
                       "(it holds no capability covering it)")


_site_sources: list[tuple[str, str]] | None = None


def runtime_site_sources() -> list[tuple[str, str]]:
    """(inside path, host directory) of each :data:`RUNTIME_SITE_PACKAGES` package the
    kernel's own environment has (found once, without importing it)."""
    global _site_sources
    if _site_sources is None:
        import importlib.util

        found = []
        for name in RUNTIME_SITE_PACKAGES:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                continue
            places = list(spec.submodule_search_locations or []) if spec is not None else []
            if places:
                found.append((f"{RUNTIME_SITE}/{name}", places[0]))
        _site_sources = found
    return list(_site_sources)


__all__ = ["DEVICES", "ETC_DIR_ENTRIES", "ETC_FROM_HOST", "ETC_NETWORK", "ETC_NEVER",
           "ETC_SYNTHESISED",
           "ETC_SYSTEM", "KERNEL_OWNED", "LOCALTIME", "NOT_IN_WHOLE_TREE", "PRIVATE_TMP",
           "RUNTIME_SITE", "RUNTIME_SITE_PACKAGES", "RUNTIME_SRC",
           "SYSTEM_DIRS", "TTY", "check_cwd", "check_destination", "check_host_etc",
           "exo_path", "host_etc_source", "runtime_site_sources", "whole_tree"]


# ------------------------------------------------------------ a /tmp for each user
#: Where each user's ``/tmp`` is kept, under the tree's ``tmp``: one directory per user
#: (as pam_namespace polyinstantiates /tmp). A user's ``storage://tmp/x`` names
#: ``tmp/.users/USER/x`` wherever the kernel, the sandbox or the shell resolves it for
#: that user (``instance_path``), so users never meet in /tmp (alice read, replaced and
#: deleted bob's files there: a hostile review); root's ``/tmp`` is the tree's own, and
#: holds every user's. Made at login (``exo.kernel.tree.ensure_instance``).
TMP_INSTANCES = "tmp/.users"


def instance_path(path: str, user: str | None) -> str:
    """``path`` (relative to the tree, ``tmp/x``) as ``user`` sees it: under their own
    ``/tmp`` when it is in ``tmp``; unchanged for root and the kernel (``None``)."""
    if user is None or (path != "tmp" and not path.startswith("tmp/")):
        return path
    if not (user.isidentifier() and len(user) <= 32):  # (what useradd takes: no / nor .)
        raise ValueError(f"{user!r} is not a user name")
    return f"{TMP_INSTANCES}/{user}{path[3:]}"
