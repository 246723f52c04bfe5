"""Stage 2 of the sandbox launcher: runs inside bubblewrap, applies Landlock, execs the target.

Invoked as ``python3 -I -S _stage2.py CONFIG_FD`` after bubblewrap has built the namespaces
and mount view, dropped capabilities, set no_new_privs and installed the seccomp filter.
Landlock comes last because a Landlock domain forbids the mount changes bubblewrap makes.

Standard library only (``-I -S``: no site-packages, no environment). Reports over the
``status`` pipe: ``R`` when about to exec (the pipe is close-on-exec, so EOF right after ``R``
means the exec succeeded), ``E<message>`` on failure.
"""

import contextlib
import marshal
import os
import sys


def _fail(status_fd: int, message: str) -> None:
    try:
        os.write(status_fd, b"E" + message.encode("utf-8", "replace"))
    finally:
        os._exit(127)


def _close_inherited(keep: set[int]) -> None:
    """Close every descriptor but ``keep`` (stdio, bootstrap channel, status pipe)."""
    try:
        fds = sorted(int(x) for x in os.listdir("/proc/self/fd"))
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def main() -> None:
    config_fd = int(sys.argv[1])
    with os.fdopen(config_fd, "rb") as f:
        config = marshal.loads(f.read())  # written by the kernel; marshal imports in ~0 ms
    status_fd = int(config["status_fd"])
    os.set_inheritable(status_fd, False)
    keep = {0, 1, 2, status_fd, *config["keep_fds"]}
    _close_inherited(keep)
    for fd in config["keep_fds"]:
        try:
            os.set_inheritable(fd, True)
        except OSError:
            _fail(status_fd, f"kept descriptor {fd} is not open")
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_get_no_new_privs, pr_set_no_new_privs = 39, 38
        if (libc.prctl(pr_get_no_new_privs, 0, 0, 0, 0) != 1
                and libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0):
            _fail(status_fd, "cannot set no_new_privs")
        landlock = config["landlock"]
        if landlock is not None:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import _landlock  # type: ignore[import-not-found]

            net = landlock["net"]
            _landlock.apply(
                landlock["abi"],
                [(p, a) for p, a in landlock["fs"]],
                net=None if net is None else (net["bind"], net["connect"]),
                scoped=landlock["scoped"],
            )
    except OSError as exc:
        _fail(status_fd, f"landlock: {exc}")
    argv = config["argv"]
    env = config["env"]
    os.write(status_fd, b"R")
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        _fail(status_fd, f"exec {argv[0]!r}: {exc.strerror} (errno {exc.errno})")


if __name__ == "__main__":
    main()
