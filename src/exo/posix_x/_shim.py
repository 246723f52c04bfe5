"""Inside the sandbox, before the program: install the Hybrid tier's notifying filter,
hand its listener to the kernel, then execute the program.

``python3 -I -S _shim.py CONFIG_FD -- PROGRAM ARGS…`` (standard library only: it runs
with ``-I -S`` from the runtime directory every Exo process sees). ``CONFIG_FD`` is a
memfd holding JSON: ``sock`` (a socket to the kernel), ``bpf`` (the filter, hex) and
``exec`` (the files the program may execute, or null for any). Steps:

1. ``seccomp(SET_MODE_FILTER, NEW_LISTENER)`` with the kernel's program (``no_new_privs``
   is already set by the sandbox);
2. the listener goes to the kernel over ``sock`` (``SCM_RIGHTS``), then both are closed;
3. when the program's exec policy is a list, a Landlock layer handling EXECUTE alone
   allows it only on those files (and the ``storage://`` directories granted EXECUTE):
   the interpreter running this shim is then no more executable than it was for the
   program (Landlock layers only narrow);
4. ``execve`` of the program (which the kernel's broker sees and lets through).

Any failure exits 126 before the program runs, with one line on stderr: a program never
runs without its broker.
"""

import ctypes
import json
import os
import socket
import sys

_NR_SECCOMP = 317
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_NR_LL_CREATE, _NR_LL_ADD, _NR_LL_RESTRICT = 444, 445, 446
_LL_EXECUTE = 1
_LL_RULE_PATH_BENEATH = 1


class _Fprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class _RulesetAttr(ctypes.Structure):
    _fields_ = (("handled_access_fs", ctypes.c_uint64),)


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _fail(message: str) -> None:
    sys.stderr.write(f"posix-x: the Hybrid broker could not start: {message}\n")
    os._exit(126)


def _install(program: bytes) -> int:
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _Fprog(len=len(program) // 8, filter=ctypes.cast(buf, ctypes.c_void_p).value)
    fd = _libc.syscall(ctypes.c_long(_NR_SECCOMP), ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
                       ctypes.c_long(_SECCOMP_FILTER_FLAG_NEW_LISTENER), ctypes.byref(prog))
    if fd < 0:
        _fail(f"seccomp: {os.strerror(ctypes.get_errno())}")
    return int(fd)


def _restrict_exec(paths: list[str]) -> None:
    attr = _RulesetAttr(handled_access_fs=_LL_EXECUTE)
    ruleset = _libc.syscall(ctypes.c_long(_NR_LL_CREATE), ctypes.byref(attr),
                            ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        _fail(f"landlock: {os.strerror(ctypes.get_errno())}")
    for path in paths:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # not in this view: nothing to execute there
        rule = _PathBeneath(allowed_access=_LL_EXECUTE, parent_fd=fd)
        res = _libc.syscall(ctypes.c_long(_NR_LL_ADD), ctypes.c_long(ruleset),
                            ctypes.c_long(_LL_RULE_PATH_BENEATH), ctypes.byref(rule),
                            ctypes.c_uint32(0))
        os.close(fd)
        if res < 0:
            _fail(f"landlock rule {path}: {os.strerror(ctypes.get_errno())}")
    if _libc.syscall(ctypes.c_long(_NR_LL_RESTRICT), ctypes.c_long(ruleset),
                     ctypes.c_uint32(0)) < 0:
        _fail(f"landlock: {os.strerror(ctypes.get_errno())}")
    os.close(ruleset)


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        _fail("usage: _shim.py CONFIG_FD -- PROGRAM ARGS…")
    try:
        config_fd = int(argv[1])
        config = json.loads(os.pread(config_fd, 1 << 20, 0))
        os.close(config_fd)
        sock = socket.socket(fileno=int(config["sock"]))
        program = bytes.fromhex(config["bpf"])
    except (ValueError, KeyError, OSError, TypeError) as exc:
        _fail(f"bad configuration ({exc})")
        return
    listener = _install(program)
    try:
        socket.send_fds(sock, [b"L"], [listener])
        if sock.recv(1) != b"K":  # the kernel serves the listener from now on
            _fail("the kernel did not take the listener")
    except OSError as exc:
        _fail(f"handing the listener to the kernel: {exc}")
    os.close(listener)
    sock.close()
    if config.get("exec") is not None:
        _restrict_exec(config["exec"])
    target = argv[3:]
    try:
        os.execv(target[0], target)
    except OSError as exc:
        if exc.errno == 13:
            sys.stderr.write(f"posix-x run: {target[0]}: executing it was refused: list it "
                             "in the manifest's [posix_x] exec, or hold "
                             "storage://…=EXECUTE on its directory\n")
        else:
            sys.stderr.write(f"posix-x run: {target[0]}: {exc.strerror}\n")
        os._exit(127 if exc.errno == 2 else 126)


if __name__ == "__main__":
    main(sys.argv)
