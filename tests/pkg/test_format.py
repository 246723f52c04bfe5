"""The .exopkg format under attack: every hostile package is refused with a clear message
and leaves nothing behind outside the destination."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from exo.pkg import format as fmt
from exo.pkg import sign

MANIFEST = b"""[package]
name = "hello"
version = "0.1.0"
description = "test"

[sandbox]
capabilities = ["storage://home/demo=READ"]

[binary]
type = "python"
entry = "bin/hello"
"""


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> sign.Signer:
    return sign.load_signer(tmp_path_factory.mktemp("keys"))


def _pkg(tmp_path: Path, signer: sign.Signer, items: list[tuple[fmt.Entry, bytes | None]],
         manifest: bytes = MANIFEST) -> Path:
    return fmt.write_package(tmp_path / "hello-0.1.0.exopkg", manifest, items, signer)


def _file(path: str, data: bytes) -> tuple[fmt.Entry, bytes]:
    import hashlib

    return fmt.Entry(path, "file", 0o755, len(data), hashlib.sha256(data).hexdigest()), data


def _good(tmp_path: Path, signer: sign.Signer) -> Path:
    return _pkg(tmp_path, signer, [(fmt.Entry("bin", "dir", 0o755), None),
                                   _file("bin/hello", b"#!/bin/sh\necho hi\n"),
                                   (fmt.Entry("lib", "symlink", target="bin"), None)])


def test_roundtrip_and_verify(tmp_path: Path, signer: sign.Signer) -> None:
    pkg = fmt.read_package(_good(tmp_path, signer))
    assert pkg.manifest.name == "hello" and pkg.manifest.capabilities
    dest = tmp_path / "out"
    fmt.extract(pkg, dest)
    assert (dest / "bin/hello").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.readlink(dest / "lib") == "bin"
    assert fmt.verify_installed(dest) == []
    (dest / "bin/hello").write_bytes(b"evil")
    assert fmt.verify_installed(dest) == ["bin/hello: modified"]


def _flip(path: Path, offset_from_end: int) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_payload(tmp_path: Path, signer: sign.Signer) -> None:
    path = _good(tmp_path, signer)
    _flip(path, 3)
    with pytest.raises(fmt.FormatError, match="payload does not match"):
        fmt.read_package(path)


def test_tampered_manifest(tmp_path: Path, signer: sign.Signer) -> None:
    path = _good(tmp_path, signer)
    data = path.read_bytes()
    evil = MANIFEST.replace(b"home/demo=READ", b"home/demo=WRIT")
    assert len(evil) == len(MANIFEST)
    path.write_bytes(data.replace(MANIFEST, evil))
    with pytest.raises(fmt.FormatError, match="tampered manifest"):
        fmt.read_package(path)


def test_tampered_header(tmp_path: Path, signer: sign.Signer) -> None:
    path = _good(tmp_path, signer)
    path.write_bytes(path.read_bytes().replace(b'"hello"', b'"hellp"', 1))
    with pytest.raises(fmt.FormatError, match="bad signature"):
        fmt.read_package(path)


def test_wrong_key(tmp_path: Path, signer: sign.Signer) -> None:
    other = sign.load_signer(tmp_path / "other")
    path = _good(tmp_path, other)
    ours = sign.fingerprint(signer.public)
    with pytest.raises(fmt.FormatError, match="does not trust"):
        fmt.read_package(path, trusted=lambda fp: fp == ours)
    # the signer key swapped for ours: the signature no longer verifies
    data = path.read_bytes().replace(other.public, signer.public)
    path.write_bytes(data)
    with pytest.raises(fmt.FormatError, match="bad signature"):
        fmt.read_package(path)


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a/../../x", ".exo/header.json"])
def test_path_traversal(tmp_path: Path, signer: sign.Signer, bad: str) -> None:
    path = _pkg(tmp_path, signer, [_file(bad, b"x")])
    with pytest.raises(fmt.FormatError, match="path"):
        fmt.read_package(path)
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("target", ["/etc", "../..", "a/../../.."])
def test_symlink_out(tmp_path: Path, signer: sign.Signer, target: str) -> None:
    path = _pkg(tmp_path, signer, [(fmt.Entry("l", "symlink", target=target), None)])
    with pytest.raises(fmt.FormatError, match="outside"):
        fmt.read_package(path)


def test_symlink_chain_out_refused_at_extract(tmp_path: Path, signer: sign.Signer) -> None:
    # "up" -> "." is inside; "x" -> "up/.." is lexically "." but really the parent
    items: list[tuple[fmt.Entry, bytes | None]] = [
        (fmt.Entry("d", "dir", 0o755), None),
        (fmt.Entry("d/up", "symlink", target="."), None),
        (fmt.Entry("d/x", "symlink", target="up/../.."), None)]
    pkg_path = _pkg(tmp_path, signer, items)
    with pytest.raises(fmt.FormatError, match="outside"):
        fmt.extract(fmt.read_package(pkg_path), tmp_path / "out")


def test_write_through_symlink_refused(tmp_path: Path, signer: sign.Signer) -> None:
    (tmp_path / "victim").mkdir()
    items: list[tuple[fmt.Entry, bytes | None]] = [
        (fmt.Entry("l", "symlink", target="."), None), _file("l/f", b"x")]
    pkg = fmt.read_package(_pkg(tmp_path, signer, items))
    with pytest.raises(fmt.FormatError):
        fmt.extract(pkg, tmp_path / "out")


@pytest.mark.parametrize("kind", ["chardev", "blockdev", "fifo", "socket"])
def test_device_files(tmp_path: Path, signer: sign.Signer, kind: str) -> None:
    path = _pkg(tmp_path, signer, [(fmt.Entry("dev/null", kind), None)])
    with pytest.raises(fmt.FormatError, match="device and special files"):
        fmt.read_package(path)


def test_bomb_lying_header(tmp_path: Path, signer: sign.Signer) -> None:
    """The header says 10 bytes; the payload inflates to 64 MiB: stopped after 10."""
    import hashlib

    big = b"\0" * (64 << 20)
    entry = fmt.Entry("f", "file", 0o644, 10, hashlib.sha256(big[:10]).hexdigest())
    pkg = fmt.read_package(_pkg(tmp_path, signer, [(entry, big)]))
    with pytest.raises(fmt.FormatError, match="larger than its header"):
        fmt.extract(pkg, tmp_path / "out")
    assert (tmp_path / "out/f").stat().st_size == 10


def test_bomb_declared(tmp_path: Path, signer: sign.Signer) -> None:
    path = _pkg(tmp_path, signer, [_file("f", b"\0" * (2 << 20))])
    with pytest.raises(fmt.FormatError, match="bound"):
        fmt.read_package(path, max_unpacked=1 << 20)


def test_truncated_and_garbage(tmp_path: Path, signer: sign.Signer) -> None:
    path = _good(tmp_path, signer)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(fmt.FormatError, match="payload length"):
        fmt.read_package(path)
    path.write_bytes(fmt.MAGIC + struct.pack(">I", 1 << 30))
    with pytest.raises(fmt.FormatError, match="bound"):
        fmt.read_package(path)
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(fmt.FormatError, match=r"not an \.exopkg"):
        fmt.read_package(path)


def test_hsm_hybrid_key_signs_packages(tmp_path: Path) -> None:
    """``exo build --key hsm:NAME``: the header signed through the token verifies."""
    import shutil
    import subprocess
    import sys

    if shutil.which("softhsm2-util") is None:
        pytest.skip("softhsm2 not installed (make setup installs it)")
    root = tmp_path / "root"
    env = dict(os.environ, EXO_ROOT=str(root))
    env.pop("EXO_PKCS11_MODULE", None)
    r = subprocess.run([sys.executable, "-m", "exo", "keys", "create", "rel", "--type",
                        "hybrid"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    script = ("import sys; from pathlib import Path; from exo.pkg import sign; "
              "from tests.pkg.test_format import _good; "
              "p = _good(Path(sys.argv[1]), sign.load_signer(Path(sys.argv[2]), 'hsm:rel'));"
              "print(p)")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(root)], env=env,
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    pkg = fmt.read_package(Path(out.stdout.strip()))
    from exo.security import pq

    assert pkg.public == pq.dearmor(r.stdout)


def test_mutations_fail_cleanly(tmp_path: Path, signer: sign.Signer) -> None:
    """Any flipped byte or truncation anywhere is refused with FormatError (never another
    exception, never a partial unpack outside the destination)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    good = _good(tmp_path, signer).read_bytes()
    target = tmp_path / "m.exopkg"

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.integers(0, len(good) - 1), st.integers(1, 255), st.booleans())
    def check(pos: int, xor: int, truncate: bool) -> None:
        data = bytearray(good)
        if truncate:
            del data[pos:]
        else:
            data[pos] ^= xor
        target.write_bytes(bytes(data))
        with pytest.raises(fmt.FormatError):
            fmt.read_package(target)

    check()
