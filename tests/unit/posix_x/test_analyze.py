"""posix-x analyze against real binaries of this host, scripts, and hostile files."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from exo.posix_x import analyze as az
from exo.posix_x import cli, table

CAT = "/usr/bin/cat"
PYTHON = os.path.realpath("/usr/bin/python3")
POSTGRES = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))), None) \
    if Path("/usr/lib/postgresql").is_dir() else None


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _syscalls(report: az.Report) -> dict[str, dict[str, object]]:
    return {str(s["name"]): s for s in report.syscalls}


def test_cat_is_a_dynamic_elf_that_needs_libc_and_nothing_else() -> None:
    r = az.analyze(CAT)
    assert r.elf["linkage"] == "dynamic"
    assert r.elf["interpreter"] == "/lib64/ld-linux-x86-64.so.2"
    assert r.elf["needed"] == ["libc.so.6"]
    assert {"read", "write", "open"} <= set(r.imports)
    calls = _syscalls(r)
    assert calls["openat"]["tier"] == table.HYBRID and "open" in calls["openat"]["via"]
    assert calls["read"]["tier"] == table.FAST
    keys = {c["key"] for c in r.capabilities}
    assert keys == {"posix_x.system_dirs"}, r.capabilities  # no network, no fork, no exec
    assert r.score is not None and 90 < r.score <= 100
    manifest = tomllib.loads(r.manifest)
    assert manifest["posix_x"] == {"system_dirs": True, "fork": False, "exec": []}
    assert manifest["sandbox"]["capabilities"] == []


def test_python_needs_network_fork_and_exec_and_says_what_is_refused() -> None:
    r = az.analyze(PYTHON)
    keys = {c["key"] for c in r.capabilities}
    assert {"net", "posix_x.fork", "posix_x.exec"} <= keys
    calls = _syscalls(r)
    assert calls["clone3"]["emulated"] is True  # pthread_create / posix_spawn
    assert calls["connect"]["tier"] == table.HYBRID
    assert any(w.startswith("chroot") and "EPERM" in w for w in r.warnings)
    assert any("syscall()" in w for w in r.warnings)
    manifest = tomllib.loads(r.manifest)
    assert manifest["posix_x"]["fork"] is True
    assert "/bin/sh" in manifest["posix_x"]["exec"]  # system() / popen()
    assert manifest["sandbox"]["network"] == ["net://loopback=SEND,RECV"]


@pytest.mark.skipif(POSTGRES is None, reason="PostgreSQL is not installed")
def test_postgres_names_its_socket_directory_as_a_storage_capability() -> None:
    assert POSTGRES is not None
    r = az.analyze(str(POSTGRES))
    assert "libssl.so.3" in r.elf["needed"]  # type: ignore[operator]
    state = [p for p in r.paths if p["kind"] == "state"]
    assert any(p["path"].startswith(("/var/run/postgresql", "/run/postgresql")) for p in state)
    caps = tomllib.loads(r.manifest)["sandbox"]["capabilities"]
    assert any(c.startswith("storage://") and c.endswith("=READ,WRITE") for c in caps)


def test_nginx_if_installed() -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        pytest.skip("nginx is not installed")
    r = az.analyze(nginx)
    assert "net" in {c["key"] for c in r.capabilities}
    assert any("listens" in c["why"] for c in r.capabilities if c["key"] == "net")


def test_deep_reads_the_needed_libraries_too() -> None:
    shallow = az.analyze(PYTHON)
    deep = az.analyze(PYTHON, deep=True)
    assert deep.libraries and all(os.path.isfile(p) for p in deep.libraries)
    assert not any("libc.so" in p for p in deep.libraries)
    assert set(shallow.imports) <= set(deep.imports)


def test_a_script_is_analysed_through_its_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh -e\necho hello\n")
    r = az.analyze(str(script))
    assert r.scripts == [{"script": str(script), "interpreter": "/bin/sh", "argument": "-e"}]
    assert r.elf["path"] == "/bin/sh"
    assert tomllib.loads(r.manifest)["posix_x"]["exec"][0] == "/bin/sh"
    code, out, err = _run("analyze", str(script))
    assert code == 0 and err == ""
    assert "script, interpreted by /bin/sh" in out


def test_env_shebang_resolves_the_program_on_path(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/usr/bin/env python3\nprint(1)\n")
    r = az.analyze(str(script))
    assert r.scripts[0]["program"] == shutil.which("python3")
    exec_list = tomllib.loads(r.manifest)["posix_x"]["exec"]
    assert "/usr/bin/env" in exec_list and shutil.which("python3") in exec_list


def test_a_static_binary_is_read_from_its_symbol_table(tmp_path: Path) -> None:
    source = tmp_path / "s.c"
    source.write_text('#include <unistd.h>\nint main(void){return fork() < 0;}\n')
    binary = tmp_path / "s"
    built = subprocess.run(["gcc", "-static", "-o", str(binary), str(source)],
                           capture_output=True, timeout=120)
    if built.returncode != 0:
        pytest.skip("no static libc to link against")
    r = az.analyze(str(binary))
    assert r.elf["linkage"] == "static" and r.elf["interpreter"] is None
    assert "fork" in r.functions
    assert "posix_x.system_dirs" not in {c["key"] for c in r.capabilities}
    assert any("statically linked" in w for w in r.warnings)
    subprocess.run(["strip", str(binary)], check=True, timeout=60)
    stripped = az.analyze(str(binary))
    assert stripped.score is None and not stripped.functions
    assert any("stripped" in w for w in stripped.warnings)


def test_paths_are_classified_and_sensitive_ones_flagged() -> None:
    paths = ["/etc/shadow", "/etc/sudoers.d", "/etc/ssh/ssh_host_ed25519_key", "/root/.x",
             "/etc/passwd", "/usr/share/zoneinfo", "/dev/null", "/proc/self/maps",
             "/var/lib/app/state.db", "/run/app.pid"]
    kinds = {p["path"]: p["kind"] for p in az._classify_paths(paths)}
    assert [kinds[p] for p in paths] == ["refused"] * 4 + ["system"] * 2 + ["provided"] * 2 \
        + ["state"] * 2
    assert az._storage_name("/var/lib/app/state.db") == "storage://var/lib/app"
    assert az._storage_name("/run/app.pid") == "storage://run/app.pid"


def test_the_score_follows_the_documented_formula() -> None:
    r = az.analyze(CAT)
    rows = [table.BY_NAME[str(s["name"])] for s in r.syscalls]
    expected = 100 * sum(az._weight(s) for s in rows) / len(rows)
    assert r.score == round(expected, 1)
    assert az._weight(table.BY_NAME["ptrace"]) == 0.0
    assert az._weight(table.BY_NAME["clone3"]) == az.WEIGHTS["emulated"]


def test_json_output_is_the_report_dict() -> None:
    code, out, err = _run("analyze", CAT, "--json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["elf"]["needed"] == ["libc.so.6"]
    assert data["tiers"] == az.analyze(CAT).tier_counts()
    assert set(data) >= {"syscalls", "capabilities", "score", "manifest", "warnings"}


def test_rendered_output_reads_like_the_seed() -> None:
    code, out, _ = _run("analyze", CAT)
    assert code == 0
    assert "Compatibility score:" in out and "Suggested manifest" in out
    assert "✓" in out and "fast path" in out


# Hostile input: one line on stderr, status 1, never a traceback.

def _one_line_error(path: str, expected: str) -> None:
    code, out, err = _run("analyze", path)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in err


def test_a_missing_file(tmp_path: Path) -> None:
    _one_line_error(str(tmp_path / "nope"), "no such file")


def test_a_text_file_is_not_an_elf(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("hello\n")
    _one_line_error(str(tmp_path / "t.txt"), "not an ELF executable or a script")


def test_a_directory_a_device_and_a_fifo(tmp_path: Path) -> None:
    _one_line_error(str(tmp_path), "is a directory")
    _one_line_error("/dev/null", "not a regular file")
    os.mkfifo(tmp_path / "fifo")  # no writer: a blocking open would hang
    _one_line_error(str(tmp_path / "fifo"), "not a regular file")


@pytest.mark.parametrize("size", [4, 20, 64, 100, 3000, 40000])
def test_a_truncated_elf(tmp_path: Path, size: int) -> None:
    path = tmp_path / "cut"
    path.write_bytes(Path(CAT).read_bytes()[:size])
    _one_line_error(str(path), "malformed or truncated ELF")


@pytest.mark.parametrize("line", ["#!", "#!relative/sh", "#!/no/such/interpreter",
                                  "#!/usr/bin/env no-such-program-xyz"])
def test_bad_shebangs(tmp_path: Path, line: str) -> None:
    path = tmp_path / "s"
    path.write_text(line + "\n")
    code, _, err = _run("analyze", str(path))
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err


def test_a_shebang_loop_stops(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.write_text(f"#!{loop}\n")
    _one_line_error(str(loop), "levels of #! interpreters")


def test_corrupted_elves_never_crash(tmp_path: Path) -> None:
    """Random byte flips in the headers and tables of a real binary: a report or one line."""
    original = Path(CAT).read_bytes()
    rng = random.Random(10)
    path = tmp_path / "mutant"
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            where = rng.choice([rng.randrange(64), rng.randrange(64, 1024),
                                rng.randrange(len(data) - 4096, len(data)),
                                rng.randrange(len(data))])
            data[where] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            az.analyze(str(path))
        except az.AnalyzeError as exc:
            assert "\n" not in str(exc)


def test_cli_usage_errors_are_one_line_with_status_2() -> None:
    for argv in (["bogus"], ["analyze"], [], ["syscalls", "--tier", "nope"]):
        code, out, err = _run(*argv)
        assert code == 2 and out == "" and err.count("\n") == 1, (argv, err)


def test_cli_help_exits_zero() -> None:
    assert subprocess.run([sys.executable, "-m", "exo.posix_x.cli", "--help"],
                          capture_output=True, timeout=60).returncode == 0


def test_cli_syscalls() -> None:
    code, out, _ = _run("syscalls", "openat", "101", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["openat", "ptrace"]
    assert rows[1]["errno"] == "EPERM"
    code, out, _ = _run("syscalls", "--tier", "legacy", "--json")
    assert {r["tier"] for r in json.loads(out)} == {"legacy"}
    code, out, _ = _run("syscalls", "--markdown")
    assert out == table.markdown()
    code, out, _ = _run("syscalls", "getpid")
    assert code == 0 and "getpid" in out
    code, _, err = _run("syscalls", "nosuchcall")
    assert code == 1 and "no such x86-64 syscall" in err


def test_names_from_the_file_cannot_reach_the_terminal_or_the_manifest(tmp_path: Path) -> None:
    """A DT_NEEDED carrying an escape sequence and a newline is shown escaped, and the
    suggested manifest stays valid TOML with nothing injected."""
    data = Path(CAT).read_bytes()
    assert b"libc.so.6\0" in data
    path = tmp_path / "evil"
    path.write_bytes(data.replace(b"libc.so.6\0", b"l\x1b[2J\nx=6\0"))
    code, out, err = _run("analyze", str(path))
    assert code == 0, err
    assert "\x1b" not in out and "\\x1b" in out
    r = az.analyze(str(path))
    assert r.elf["needed"] == ["l\\x1b[2J\\x0ax=6"]
    assert "x" not in tomllib.loads(r.manifest)


def test_without_section_headers_the_dynamic_segment_is_read(tmp_path: Path) -> None:
    """sstrip-style binaries drop the section headers; PT_DYNAMIC still names everything."""
    import struct

    data = bytearray(Path(CAT).read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)  # e_shoff
    struct.pack_into("<HH", data, 0x3C, 0, 0)  # e_shnum, e_shstrndx
    path = tmp_path / "noshdr"
    path.write_bytes(bytes(data))
    r, full = az.analyze(str(path)), az.analyze(CAT)
    assert r.elf["needed"] == ["libc.so.6"]
    assert r.imports == full.imports and r.score == full.score
