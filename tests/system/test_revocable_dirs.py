"""Directory grants are revocable: after revocation, a process that holds ``storage://``
on a directory loses every direct filesystem access to it (paths, its cwd, fds it already
opened), not only the kernel-mediated opens. (DESIGN §3 invariant 2; the mechanism is the
kernel's FUSE passthrough, docs/revocable-files.md.)"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

from tests.system.helpers import APP_PYTHON, run_app

from exo.kernel.files import OpenFileTable
from exo.kernel.kernel import Kernel

# Probes run inside the sandbox: touch the grant directly (no exo_std), say "ready", wait
# for the go-ahead (the capability is revoked meanwhile), then try everything again.
ATTEMPT = r"""
import errno, os, sys

def attempt(name, fn):
    try:
        fn()
        print(name, "ok", flush=True)
    except OSError as exc:
        print(name, errno.errorcode.get(exc.errno, exc.errno), flush=True)
"""

PROBE = ATTEMPT + r"""
base = sys.argv[1]
if WRITABLE:
    kept = os.open(os.path.join(base, "kept.txt"), os.O_RDWR | os.O_CREAT, 0o644)
    os.write(kept, b"before")
else:
    kept = os.open(os.path.join(base, "kept.txt"), os.O_RDONLY)

def everything(tag):
    attempt(tag + "open", lambda: open(os.path.join(base, "data.txt")).read())
    attempt(tag + "stat", lambda: os.stat(os.path.join(base, "data.txt")))
    attempt(tag + "listdir", lambda: os.listdir(base))
    attempt(tag + "listdir-cwd", lambda: os.listdir("."))
    attempt(tag + "open-cwd", lambda: open("data.txt").read())
    attempt(tag + "read-kept-fd", lambda: os.pread(kept, 6, 0))
    attempt(tag + "fstat-kept-fd", lambda: os.fstat(kept))
    if WRITABLE:
        attempt(tag + "write-kept-fd", lambda: os.pwrite(kept, b"after!", 0))
        attempt(tag + "create", lambda: open(os.path.join(base, tag + "new.txt"), "w").write("x"))
        attempt(tag + "mkdir", lambda: os.mkdir(tag + "sub"))
        attempt(tag + "rename", lambda: os.rename("data.txt", "moved.txt") or
                os.rename("moved.txt", "data.txt"))

everything("pre-")
print("ready", flush=True)
sys.stdin.readline()
everything("post-")
"""

CHECKS = ["open", "stat", "listdir", "listdir-cwd", "open-cwd", "read-kept-fd",
          "fstat-kept-fd"]
WRITE_CHECKS = ["write-kept-fd", "create", "mkdir", "rename"]


def _probe(kernel: Kernel, grant: str, revoke: Callable[[], object], *, writable: bool = True
           ) -> dict[str, str]:
    """Spawn PROBE holding ``grant``, revoke with ``revoke()`` midway; results by check."""
    base = kernel.root / "home" / "a"
    (base / "data.txt").write_text("data\n")
    return _run_probe(kernel, PROBE.replace("WRITABLE", repr(writable)), "/home/a", grant,
                      revoke, cwd="/home/a")


def _run_probe(kernel: Kernel, code: str, arg: str, grant: str, revoke: Callable[[], object],
               cwd: str = "/") -> dict[str, str]:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        proc = kernel.processes.spawn([APP_PYTHON, "-c", code, arg], [_grant(grant)],
                                      stdio=(in_r, out_w, out_w), cwd=cwd)
    finally:
        os.close(in_r)
        os.close(out_w)
    with os.fdopen(out_r) as out, os.fdopen(in_w, "w") as go:
        lines = []
        for line in out:
            lines.append(line.strip())
            if line.strip() == "ready":
                revoke()
                go.write("go\n")
                go.flush()
        assert kernel.processes.wait(proc.pid, timeout=60) == 0, "\n".join(lines)
    return dict(line.rsplit(" ", 1) for line in lines if " " in line)


def _grant(text: str) -> object:
    from exo.kernel.manifest import parse_grant

    return parse_grant(text)


def _assert_cut(results: dict[str, str], checks: list[str]) -> None:
    for check in checks:
        assert results["pre-" + check] == "ok", (check, results)
    for check in checks:
        assert results["post-" + check] == "EACCES", (check, results)


def test_kernel_revocation_cuts_paths_cwd_and_open_fds(kernel: Kernel) -> None:
    results = _probe(kernel, "storage://home/a=READ,WRITE",
                     lambda: kernel.caps.revoke_resource("storage://home/a"))
    _assert_cut(results, CHECKS + WRITE_CHECKS)
    # What was written before revocation reached the real directory.
    assert (kernel.root / "home" / "a" / "kept.txt").read_bytes() == b"after!"  # pre- write
    assert (kernel.root / "home" / "a" / "pre-new.txt").read_text() == "x"
    assert not (kernel.root / "home" / "a" / "post-new.txt").exists()
    assert (kernel.root / "home" / "a" / "pre-sub").is_dir()


def test_revoking_an_ancestor_capability_cuts_the_grant(kernel: Kernel) -> None:
    holder = 999_001
    kernel.caps.create_space(holder)
    try:
        root = kernel.caps.grant_root(holder, "storage://home", "ALL")

        def derive(pid: int) -> None:
            kernel.caps.transfer(holder, kernel.caps.duplicate(holder, root, "READ,WRITE"
                                                               ",DUPLICATE,TRANSFER"), pid)

        # The spawned probe holds a capability derived from `holder`'s root; revoking the
        # root (an ancestor, in another space) must cut its directory.
        (kernel.root / "home" / "data.txt").write_text("data\n")
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            proc = kernel.processes.spawn(
                [APP_PYTHON, "-c", PROBE.replace("WRITABLE", "True"), "/home"],
                [], stdio=(in_r, out_w, out_w), derive=derive, cwd="/home")
        finally:
            os.close(in_r)
            os.close(out_w)
        lines = []
        with os.fdopen(out_r) as out, os.fdopen(in_w, "w") as go:
            for line in out:
                lines.append(line.strip())
                if line.strip() == "ready":
                    kernel.caps.revoke(holder, root)
                    go.write("go\n")
                    go.flush()
            assert kernel.processes.wait(proc.pid, timeout=60) == 0, "\n".join(lines)
        results = dict(line.rsplit(" ", 1) for line in lines if " " in line)
        # Paths named relative to the grant (home) and to the cwd (also home).
        _assert_cut(results, CHECKS + WRITE_CHECKS)
    finally:
        kernel.caps.destroy_space(holder)


PARENT = r"""
import os, sys
from exo_std import handles, process, Rights
cap = handles()[0]
in_r, in_w = os.pipe()
out_r, out_w = os.pipe()
pid = process.spawn(["/usr/bin/python3", "-c", CHILD, BASE],
                    [(cap, Rights.READ | Rights.WRITE)], stdin=in_r, stdout=out_w,
                    stderr=out_w)
os.close(in_r)
os.close(out_w)
child = os.fdopen(out_r)
for line in child:
    print(line.strip(), flush=True)
    if line.strip() == "ready":
        print("revoked", cap.revoke(), flush=True)
        os.write(in_w, b"go\n")
print("child status", process.wait(pid), flush=True)
"""


def test_parent_revoking_cuts_its_childs_directory(kernel: Kernel) -> None:
    base = kernel.root / "home" / "a"
    (base / "data.txt").write_text("data\n")
    code = PARENT.replace("BASE", repr("/home/a"))
    code = code.replace("CHILD", repr(PROBE.replace("WRITABLE", "True")))
    status, out, err = run_app(kernel, code,
                               "storage://home/a=READ,WRITE,DUPLICATE")
    assert status == 0, err
    results = dict(line.rsplit(" ", 1) for line in out.splitlines() if " " in line)
    assert results["child status"] == "0", out
    _assert_cut(results, CHECKS + WRITE_CHECKS)


def test_read_only_grant_reads_until_revoked_and_never_writes(kernel: Kernel) -> None:
    (kernel.root / "home" / "a" / "kept.txt").write_bytes(b"kept")
    results = _probe(kernel, "storage://home/a=READ",
                     lambda: kernel.caps.revoke_resource("storage://home/a"), writable=False)
    _assert_cut(results, CHECKS)
    status, out, err = run_app(kernel, r"""
        import errno, os
        for name, fn in [("create", lambda: open("new.txt", "w")),
                         ("append", lambda: open("data.txt", "a")),
                         ("unlink", lambda: os.unlink("data.txt")),
                         ("mkdir", lambda: os.mkdir("d")),
                         ("rename", lambda: os.rename("data.txt", "x")),
                         ("truncate", lambda: os.truncate("data.txt", 0)),
                         ("chmod", lambda: os.chmod("data.txt", 0o777)),
                         ("symlink", lambda: os.symlink("data.txt", "l"))]:
            try:
                fn()
                print(name, "DONE")
            except OSError as exc:
                print(name, errno.errorcode[exc.errno])
    """, "storage://home/a=READ")
    assert status == 0, err
    assert "DONE" not in out, out
    assert (kernel.root / "home" / "a" / "data.txt").read_text() == "data\n"


def test_symlinks_inside_the_grant_do_not_lead_out(kernel: Kernel) -> None:
    (kernel.root / "home" / "b" / "secret.txt").write_text("b's secret\n")
    a = kernel.root / "home" / "a"
    os.symlink(kernel.root / "home" / "b", a / "abs")
    os.symlink("../b", a / "rel")
    os.symlink("/proc/1/root", a / "magic")
    status, out, err = run_app(kernel, r"""
        import errno, os
        print("readlink", os.readlink("rel"))
        for name in ("abs/secret.txt", "rel/secret.txt", "magic/etc/hostname"):
            try:
                print(name, open(name).read().strip())
            except OSError as exc:
                print(name, errno.errorcode[exc.errno])
    """, "storage://home/a=READ,WRITE")
    assert status == 0, err
    assert "readlink ../b" in out
    assert "secret" not in out.replace("secret.txt", ""), out


def test_exports_are_released_when_the_process_exits(kernel: Kernel) -> None:
    (kernel.root / "home" / "b" / "x.txt").write_text("x")
    status, out, err = run_app(kernel, "import os; print(sorted(os.listdir(B)))".replace(
        "B", repr("/home/b")),
        "storage://home/a=READ,WRITE", "storage://home/b=READ")
    assert status == 0, err
    assert out.strip() == "['x.txt']"
    stats = kernel.files.stats()
    assert stats["pinned"] == 0
    dirs = stats["dirs"]
    assert dirs is not None and dirs["exports"] == 0, stats
    assert dirs["exported"] == 2 and dirs["released"] == 2, stats


def test_without_fuse_grants_are_plain_binds_and_the_log_says_so(kernel: Kernel) -> None:
    real = kernel.processes.files  # what the spawn path exports grants through
    kernel.processes.files = OpenFileTable(kernel.caps, fuse_device="/dev/exo-no-fuse",
                                           root=kernel.root)
    try:
        for _ in range(2):
            status, out, err = run_app(kernel, """
                open("made.txt", "w").write("plain")
                print(open("made.txt").read())
            """, "storage://home/a=READ,WRITE")
            assert status == 0, err
            assert out.strip() == "plain"
        said = [m for m in kernel.messages if "NOT revocable" in m and "directory" in m]
        assert len(said) == 1, kernel.messages
    finally:
        kernel.processes.files.close()
        kernel.processes.files = real


def test_concurrent_apps_on_one_grant(kernel: Kernel) -> None:
    code = textwrap.dedent(r"""
        import os, sys
        me = sys.argv[1]
        for i in range(40):
            name = f"{me}-{i}.txt"
            with open(name, "w") as f:
                f.write(name * 50)
            with open(name) as f:
                assert f.read() == name * 50
            os.rename(name, name + ".done")
        print(len([n for n in os.listdir(".") if n.startswith(me + "-")]))
    """)
    outs = []
    procs = []
    for who in ("x", "y", "z"):
        r, w = os.pipe()
        procs.append(kernel.processes.spawn([APP_PYTHON, "-c", code, who],
                                            [_grant("storage://home/a=READ,WRITE")],
                                            stdio=(os.open(os.devnull, os.O_RDONLY), w, w),
                                            cwd="/home/a"))
        os.close(w)
        outs.append(r)
    for proc, r in zip(procs, outs, strict=True):
        with os.fdopen(r) as fh:
            text = fh.read()
        assert kernel.processes.wait(proc.pid, timeout=60) == 0, text
        assert text.strip() == "40", text
    assert len(list(Path(kernel.root / "home" / "a").glob("*.done"))) == 120


FILE_PROBE = ATTEMPT + r"""
path = sys.argv[1]
kept = os.open(path, os.O_RDWR)

def everything(tag):
    attempt(tag + "open", lambda: open(path).read())
    attempt(tag + "stat", lambda: os.stat(path))
    attempt(tag + "read-kept-fd", lambda: os.pread(kept, 4, 0))
    attempt(tag + "write-kept-fd", lambda: os.pwrite(kept, tag.encode(), 0))
    attempt(tag + "sibling", lambda: open(os.path.join(os.path.dirname(path), "other.txt")))

everything("pre-")
print("ready", flush=True)
sys.stdin.readline()
everything("post-")
"""


def test_a_single_file_grant_is_revocable_too(kernel: Kernel) -> None:
    # A grant of one regular file is bound into the sandbox from the passthrough as well:
    # revoking it cuts the path and the descriptor already open, and no sibling is visible.
    base = kernel.root / "home" / "a"
    (base / "one.txt").write_text("data\n")
    (base / "other.txt").write_text("not granted\n")
    results = _run_probe(kernel, FILE_PROBE, "/home/a/one.txt",
                         "storage://home/a/one.txt=READ,WRITE",
                         lambda: kernel.caps.revoke_resource("storage://home/a/one.txt"))
    for check in ("open", "stat", "read-kept-fd", "write-kept-fd"):
        assert results["pre-" + check] == "ok", (check, results)
        assert results["post-" + check] == "EACCES", (check, results)
    assert results["pre-sibling"] == "ENOENT" and results["post-sibling"] == "ENOENT"
    assert (base / "one.txt").read_text() == "pre-\n"  # the write before revocation landed
    dirs = kernel.files.stats()["dirs"]
    assert dirs is not None and dirs["exported"] == 1 and dirs["exports"] == 0, dirs


def test_proc_files_shows_the_file_servers(kernel: Kernel) -> None:
    from exo.shell.vfs import Vfs

    vfs = Vfs(kernel.root, kernel.virtual_trees())
    assert "files:\tnot started" in vfs.read_bytes("/proc/files").decode()
    status, _, err = run_app(kernel, "import os; os.listdir('.')", "storage://home/a=READ")
    assert status == 0, err
    text = vfs.read_bytes("/proc/files").decode()
    assert "dirs.exported:\t1" in text and "dirs.exports:\t0" in text, text
    assert f"dirs.mount_dir:\t/var/run/dirs-{kernel.boot_id}" in text
    assert str(kernel.root) not in text  # no host path of the tree inside Exo
    assert text.startswith("pinned:\t0\n")
