"""Encrypted areas from the host side (no kernel, no TPM: the explicit file master key):
the registry's rules, per-area keys, rotation and what a tampered file does."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from exo.security import areas
from exo.security import sealedfile as sf

AREA = "storage://home/a/secret"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EXO_TPM", "off")  # no TPM: only the explicit file key works
    r = tmp_path / "root"
    (r / "home" / "a").mkdir(parents=True)
    return r


def test_without_a_tpm_an_area_needs_the_explicit_file_key(root: Path) -> None:
    with pytest.raises(areas.AreaError, match="no TPM"):
        areas.create(root, AREA)
    made = areas.create(root, AREA, file_key=True)
    assert made["master"] == "file" and made["generation"] == 1
    key = root / "var" / "lib" / "areas" / "master.key"
    assert key.stat().st_mode & 0o777 == 0o600


def test_areas_start_empty_and_never_overlap(root: Path) -> None:
    (root / "home" / "a" / "full").mkdir()
    (root / "home" / "a" / "full" / "x").write_text("clear")
    with pytest.raises(areas.AreaError, match="not empty"):
        areas.create(root, "storage://home/a/full", file_key=True)
    areas.create(root, AREA, file_key=True)
    for other in ("storage://home/a/secret/inner", "storage://home/a"):
        with pytest.raises(areas.AreaError, match="overlaps"):
            areas.create(root, other, file_key=True)
    with pytest.raises(areas.AreaError, match="storage:// directory"):
        areas.create(root, "net://0.0.0.0:80", file_key=True)


def test_files_are_ciphertext_and_keys_differ_per_area(root: Path) -> None:
    areas.create(root, AREA, file_key=True)
    areas.create(root, "storage://home/a/other", label="b", file_key=True)
    data = b"same plaintext " * 100
    areas.write_file(root, AREA + "/f", data)
    areas.write_file(root, "storage://home/a/other/f", data)
    one = (root / "home/a/secret/f").read_bytes()
    two = (root / "home/a/other/f").read_bytes()
    assert b"plaintext" not in one and one[sf.HEADER:] != two[sf.HEADER:]
    assert areas.read_file(root, AREA + "/f") == data
    # a file moved from one area to another does not open there
    (root / "home/a/other/f").write_bytes(one)
    with pytest.raises(sf.TamperedError):
        areas.read_file(root, "storage://home/a/other/f")


def test_a_header_naming_another_generation_is_refused(root: Path) -> None:
    areas.create(root, AREA, file_key=True)
    areas.write_file(root, AREA + "/f", b"x")
    path = root / "home/a/secret/f"
    raw = bytearray(path.read_bytes())
    raw[sf.HEADER - 8:sf.HEADER] = struct.pack(">Q", 7)
    path.write_bytes(bytes(raw))
    with pytest.raises(sf.TamperedError, match="generation 7"):
        areas.read_file(root, AREA + "/f")
    report = areas.verify(root, AREA)
    assert list(report["tampered"]) == ["f"]


def test_rotation_reseals_everything_and_refuses_a_tampered_file(root: Path) -> None:
    areas.create(root, AREA, file_key=True)
    files = {f"f{i}": os.urandom(sf.CHUNK * i + 5) for i in range(3)}
    for name, data in files.items():
        areas.write_file(root, f"{AREA}/{name}", data)
    done = areas.rotate(root, AREA)
    assert done["generation"] == 2 and done["resealed"] == 3
    for name, data in files.items():
        assert areas.read_file(root, f"{AREA}/{name}") == data
        assert sf.parse_header((root / "home/a/secret" / name).read_bytes()[:sf.HEADER]) == 2
    path = root / "home/a/secret/f2"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(areas.AreaError, match="tampered"):
        areas.rotate(root, AREA)
    (row,) = areas.status(root)
    assert row["rotating_to"] == 3  # interrupted: readers accept both generations
    for name in ("f0", "f1"):
        assert areas.read_file(root, f"{AREA}/{name}") == files[name]
    assert path.read_bytes() == bytes(raw)  # the tampered file was left as it was


def test_a_corrupt_registry_is_an_error_not_an_empty_one(root: Path) -> None:
    areas.create(root, AREA, file_key=True)
    areas.registry_path(root).write_text("{not json")
    with pytest.raises(areas.AreaError, match="unreadable"):
        areas.load(root)


def test_a_writer_and_a_rotation_exclude_each_other(root: Path) -> None:
    made = areas.create(root, AREA, file_key=True)
    writer = areas.lock_area(root, made["id"], exclusive=False)
    try:
        with pytest.raises(areas.AreaError, match="busy"):
            areas.rotate(root, AREA, timeout=0.1)
    finally:
        os.close(writer)
    assert areas.rotate(root, AREA)["generation"] == 2
