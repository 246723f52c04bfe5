"""Encrypted storage:// areas on a booted kernel with a real swtpm: apps read and write
plaintext through the open syscall, the host disk holds only ciphertext, a flipped byte
is an error, key rotation survives kill -9 at every step."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._support.kernels import deferred_kernel, swtpm_tree

from exo.kernel.kernel import Kernel
from exo.security import areas
from exo.security import sealedfile as sf

from .helpers import run_app

GRANT = "storage://home/a=READ,WRITE"
AREA = "storage://home/a/secret"
EXO = [sys.executable, "-m", "exo"]


@pytest.fixture
def kernel_tpm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernel]:
    """A kernel booted on a tree with its own swtpm (measured), and an empty area."""
    root = tmp_path / "root"
    with swtpm_tree(root, monkeypatch), deferred_kernel(root) as k:
        (k.root / "home" / "a").mkdir(parents=True)
        areas.create(root, AREA, label="a")
        yield k


WRITE = """
from exo_std import fs
data = bytes(range(256)) * {n} + b"THE-PLAINTEXT-MARKER"
with fs.File.open("{name}", "WRITE", create=True, truncate=True) as f:
    f.write(data)
with fs.File.open("{name}", "READ") as f:
    back = f.read()
    import os
    size = os.fstat(f.fd).st_size
print(back == data, size, len(data))
"""


def test_an_app_reads_and_writes_plaintext_the_disk_holds_ciphertext(kernel_tpm: Kernel
                                                                       ) -> None:
    n = 9000  # 2.3 MB: three chunks
    status, out, err = run_app(kernel_tpm, WRITE.format(n=n, name=AREA + "/doc.bin"), GRANT)
    assert status == 0, err
    assert out.split() == ["True", str(256 * n + 20), str(256 * n + 20)]
    raw = (kernel_tpm.root / "home" / "a" / "secret" / "doc.bin").read_bytes()
    assert raw.startswith(sf.MAGIC)  # a host-side reader sees only ciphertext
    assert b"THE-PLAINTEXT-MARKER" not in raw and bytes(range(256)) not in raw
    assert areas.read_file(kernel_tpm.root, AREA + "/doc.bin") == \
        bytes(range(256)) * n + b"THE-PLAINTEXT-MARKER"
    # the decrypted copy is given back once the app has closed the file
    from exo.security import areaserve

    server = areaserve._SERVERS[str(kernel_tpm.root)]
    deadline = time.monotonic() + 10
    while server.stats()["memory_used"] != 0:
        assert time.monotonic() < deadline, server.stats()
        time.sleep(0.05)
    assert server.stats()["read"] == 1 and server.stats()["written"] == 1
    # a file outside the area stays a plain file
    status, _, err = run_app(kernel_tpm, WRITE.format(n=1, name="storage://home/a/plain.txt"),
                             GRANT)
    assert status == 0, err
    assert (kernel_tpm.root / "home" / "a" / "plain.txt").read_bytes().endswith(
        b"THE-PLAINTEXT-MARKER")


def test_a_flipped_byte_is_an_error_not_garbage(kernel_tpm: Kernel) -> None:
    status, _, err = run_app(kernel_tpm, WRITE.format(n=100, name=AREA + "/x"), GRANT)
    assert status == 0, err
    path = kernel_tpm.root / "home" / "a" / "secret" / "x"
    raw = bytearray(path.read_bytes())
    raw[sf.HEADER + 1000] ^= 0x01
    path.write_bytes(bytes(raw))
    code = f"""
from exo_std import fs
try:
    fs.File.open("{AREA}/x", "READ")
except OSError as exc:
    print("refused:", exc)
else:
    print("served")
"""
    status, out, err = run_app(kernel_tpm, code, GRANT)
    assert status == 0, err
    assert out.startswith("refused:") and "tampered" in out, out
    verify = subprocess.run([*EXO, "area", "verify", AREA], capture_output=True, text=True,
                            timeout=60, env=dict(os.environ, EXO_ROOT=str(kernel_tpm.root)))
    assert verify.returncode != 0 and "TAMPERED" in verify.stderr
    assert len(verify.stderr.strip().splitlines()) == 1


def test_append_keeps_what_was_there_and_unsupported_modes_say_why(kernel_tpm: Kernel
                                                                    ) -> None:
    code = f"""
from exo_std import fs
with fs.File.open("{AREA}/log", "WRITE", create=True) as f:
    f.write(b"one\\n")
with fs.File.open("{AREA}/log", "WRITE", append=True) as f:
    f.write(b"two\\n")
print(fs.File.open("{AREA}/log", "READ").read())
for how in ({{"rights": "READ,WRITE"}}, {{"rights": "WRITE"}}):
    try:
        fs.File.open("{AREA}/log", how["rights"])
    except OSError as exc:
        print("refused:", exc)
print(sorted(fs.listdir("{AREA}")))
"""
    status, out, err = run_app(kernel_tpm, code, GRANT)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == repr(b"one\ntwo\n")
    assert "reading or for writing, not both" in lines[1]
    assert "written whole (truncate) or appended" in lines[2]
    assert lines[3] == "['log']"  # no temporary names left behind


def test_revoking_the_capability_stops_a_writer_and_keeps_the_old_file(kernel_tpm: Kernel
                                                                       ) -> None:
    areas.write_file(kernel_tpm.root, AREA + "/kept", b"the old content")
    code = f"""
import os
from exo_std import caps, fs
cap = caps.request_capability("{AREA}", "READ,WRITE")
f = fs.File.open("{AREA}/kept", "WRITE", truncate=True)
f.write(b"partial new content")
cap.revoke()
try:
    for _ in range(200):
        f.write(b"x" * 65536)
except OSError as exc:
    print("stopped:", type(exc).__name__)
"""
    status, out, err = run_app(kernel_tpm, code, GRANT + ",GRANT")
    assert status == 0, err
    assert out.strip() == "stopped: BrokenPipeError", out
    deadline = time.monotonic() + 10
    while areas.read_file(kernel_tpm.root, AREA + "/kept") != b"the old content":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _rotate(root: Path, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EXO_ROOT=str(root))
    env.pop(areas.CRASH_ENV, None)
    if crash_at:
        env[areas.CRASH_ENV] = crash_at
    return subprocess.run([*EXO, "area", "rotate", AREA], capture_output=True, text=True,
                          timeout=120, env=env)


def test_key_rotation_loses_nothing_when_killed_at_any_step(kernel_tpm: Kernel) -> None:
    root = kernel_tpm.root
    content = {f"f{i}": os.urandom(1000 + 700_000 * i) for i in range(3)}
    (root / "home" / "a" / "secret" / "sub").mkdir()
    content["sub/deep"] = b"deep"
    for name, data in content.items():
        areas.write_file(root, f"{AREA}/{name}", data)
    generation = 1
    for step in areas.STEPS:
        crashed = _rotate(root, step)
        assert crashed.returncode == -9, (step, crashed.stderr)
        for name, data in content.items():  # every file readable, whatever its generation
            assert areas.read_file(root, f"{AREA}/{name}") == data, (step, name)
        done = _rotate(root, None)
        assert done.returncode == 0, done.stderr
        generation += 1
        (row,) = areas.status(root)
        assert row["generation"] == generation and row["rotating_to"] is None
        for name, data in content.items():
            assert areas.read_file(root, f"{AREA}/{name}") == data, (step, name)
            head = (root / "home" / "a" / "secret" / name).read_bytes()[:sf.HEADER]
            assert sf.parse_header(head) == generation
        leftovers = [p for p in (root / "home" / "a" / "secret").rglob("*")
                     if p.name.startswith(areas.TMP_PREFIX)]
        assert leftovers == []
    # and the running kernel serves the rotated files
    status, out, err = run_app(kernel_tpm, f"""
from exo_std import fs
print(fs.File.open("{AREA}/sub/deep", "READ").read())
""", GRANT)
    assert status == 0, err
    assert out.strip() == repr(b"deep")


def test_sizes_are_bounded_before_memory_is_spent(kernel_tpm: Kernel,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(areas.MAX_FILE_ENV, "1")  # 1 MiB per file
    areas.write_file(kernel_tpm.root, AREA + "/big", b"b" * (2 << 20))  # host-side
    for i in range(2):
        areas.write_file(kernel_tpm.root, f"{AREA}/m{i}", b"m" * (600 << 10))
    from exo.security import areaserve

    # 2 MiB of decrypted files at once, of which one process tree holds at most half
    monkeypatch.setenv(areaserve.MEMORY_ENV, "2")
    code = f"""
from exo_std import fs
try:
    fs.File.open("{AREA}/big", "READ")
except OSError as exc:
    print("big:", exc)
held = fs.File.open("{AREA}/m0", "READ")
try:
    fs.File.open("{AREA}/m1", "READ")
except OSError as exc:
    print("m1:", exc)
held.close()
f = fs.File.open("{AREA}/new", "WRITE", create=True)
try:
    for _ in range(64):  # 4 MiB: more than the limit plus the pipe's 1 MiB
        f.write(b"x" * 65536)
except OSError as exc:
    print("write:", type(exc).__name__)
"""
    status, out, err = run_app(kernel_tpm, code, GRANT)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("big:") and "larger than an encrypted area file" in lines[0]
    assert lines[1].startswith("m1:") and "would hold more than 1 MiB" in lines[1]
    assert lines[2] == "write: BrokenPipeError"
    assert not (kernel_tpm.root / "home" / "a" / "secret" / "new").exists()


MOUNT_PROBE = """
import os
from exo_std import fs
print("listed", "secret" in os.listdir("/home/a"))
for attempt in ("listdir", "stat", "open", "rename", "rmdir"):
    try:
        if attempt == "listdir":
            os.listdir("/home/a/secret")
        elif attempt == "stat":
            os.stat("/home/a/secret/doc.bin")
        elif attempt == "open":
            open("/home/a/secret/doc.bin", "rb").read()
        elif attempt == "rename":
            os.rename("/home/a/secret", "/home/a/moved")
        else:
            os.rmdir("/home/a/secret")
        print(attempt, "allowed")
    except OSError as exc:
        print(attempt, exc.errno)
with fs.File.open("{area}/doc.bin", "READ") as f:
    print("syscall", f.read().endswith(b"THE-PLAINTEXT-MARKER"))
"""


def test_a_directory_grant_never_shows_an_area_s_ciphertext(kernel_tpm: Kernel) -> None:
    """A grant of the area's parent is mounted, but the area's directory is not reachable
    through the mount (nor renamed out of the registry's sight, nor removed); its files
    still open decrypted through the open syscall."""
    status, _, err = run_app(kernel_tpm, WRITE.format(n=10, name=AREA + "/doc.bin"), GRANT)
    assert status == 0, err
    status, out, err = run_app(kernel_tpm, MOUNT_PROBE.format(area=AREA), GRANT)
    assert status == 0, err
    assert out.split("\n")[:7] == ["listed True", "listdir 13", "stat 13", "open 13",
                                   "rename 13", "rmdir 13", "syscall True"], out
    assert (kernel_tpm.root / "home" / "a" / "secret" / "doc.bin").exists()


@pytest.mark.parametrize("grant", [AREA, AREA + "/sub"])
def test_a_grant_of_an_area_itself_is_refused_saying_why(kernel_tpm: Kernel,
                                                         grant: str) -> None:
    (kernel_tpm.root / "home" / "a" / "secret" / "sub").mkdir()
    with pytest.raises(Exception) as info:
        run_app(kernel_tpm, "print('ran')", f"{grant}=READ")
    msg = str(info.value)
    assert "encrypted area" in msg and "storage://home/a/secret" in msg, msg
    assert "ciphertext" in msg and "not mounted" in msg
    assert "\n" not in msg


def test_without_fuse_a_grant_holding_an_area_is_refused(kernel_tpm: Kernel) -> None:
    """No FUSE: grants are plain bind mounts, which cannot hide an area inside them, so a
    grant holding one is refused (one line); other grants still work."""
    kernel_tpm.processes.files._fuse_device = str(kernel_tpm.root / "no-such-fuse")
    (kernel_tpm.root / "home" / "b").mkdir()
    with pytest.raises(Exception) as info:
        run_app(kernel_tpm, "print('ran')", GRANT)
    msg = str(info.value)
    assert "storage://home/a holds the encrypted area storage://home/a/secret" in msg, msg
    assert "\n" not in msg
    status, out, err = run_app(kernel_tpm, "print('ran')", "storage://home/b=READ")
    assert (status, out) == (0, "ran\n"), err


def test_an_unreadable_registry_mounts_nothing_of_the_tree(kernel_tpm: Kernel) -> None:
    """Fail closed: with the registry unreadable nobody can tell which directories are
    areas, so no grant of this tree is mounted."""
    areas.registry_path(kernel_tpm.root).write_text("{not json")
    with pytest.raises(Exception) as info:
        run_app(kernel_tpm, "print('ran')", GRANT)
    assert "registry is unreadable" in str(info.value)
