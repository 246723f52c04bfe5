"""The Debian bridge's subtle parts on small made-up inputs: reading apt's lists and
dependency syntax, libsolv's closure over a base system, merging unpacked packages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exo.pkg.debian import DebianError, default_port, exo_version, find_entry, merge, wrapper
from exo.pkg.debian_index import (
    DebianIndexError,
    DebianSolver,
    Dep,
    parse_available,
    parse_relations,
)

AVAILABLE = """\
Package: libc6
Version: 2.36-9+deb12u4
Architecture: amd64
Priority: optional

Package: coreutils
Version: 9.1-1
Architecture: amd64
Essential: yes
Priority: required
Pre-Depends: libc6 (>= 2.34)

Package: libc-bin
Version: 2.36-9+deb12u4
Architecture: amd64
Priority: required
Depends: libc6 (>> 2.36), libc6 (<< 2.37)

Package: adduser
Version: 3.134
Architecture: all
Priority: important
Depends: passwd

Package: libfast1
Version: 1:1.5-2
Architecture: amd64
Depends: libc6 (>= 2.14)

Package: libslow0
Version: 0.9-1
Architecture: amd64
Provides: libfast-compat (= 1.0)

Package: server-tools
Version: 2:4.0-1~deb12u1
Architecture: amd64
Depends: libfast1 (>= 1:1.5), libc6, adduser, missing-virtual | libfast-compat

Package: server
Version: 2:4.0-1~deb12u1
Architecture: amd64
Depends: server-tools (= 2:4.0-1~deb12u1)
Description: a server

Package: foreign
Version: 1.0
Architecture: i386

Package: broken
Version: 1.0
Architecture: amd64
Depends: libfast1 (>= 2:0)
"""


def test_relations_parse_as_debian_writes_them() -> None:
    assert parse_relations("a (>= 1.2), b | c:any (<< 2~rc1), d [amd64]", "x") == [
        [Dep("a", ">=", "1.2")], [Dep("b"), Dep("c", "<", "2~rc1")], [Dep("d")]]
    assert parse_relations("", "x") == []
    with pytest.raises(DebianIndexError, match="cannot read the dependency"):
        parse_relations("a (>= 1", "x")


def test_available_keeps_this_architecture_and_all() -> None:
    found = parse_available(AVAILABLE, ["amd64"])
    assert "foreign" not in found and "adduser" in found
    assert found["server"].depends == [[Dep("server-tools", "=", "2:4.0-1~deb12u1")]]
    assert found["coreutils"].essential
    with pytest.raises(DebianIndexError, match="without Package/Version"):
        parse_available("Package: x\nArchitecture: all\n", ["amd64"])


def test_closure_bundles_what_the_base_system_lacks() -> None:
    solver = DebianSolver(parse_available(AVAILABLE, ["amd64"]))
    closure = solver.closure(["server"])
    # libc6 comes with the base (coreutils needs it; libc-bin needs >> 2.36, which
    # 2.36-9 is in Debian's order); adduser only serves maintainer scripts;
    # "missing-virtual | libfast-compat" is met by what provides the second.
    assert [p.name for p in closure.bundle] == ["libfast1", "libslow0", "server",
                                                "server-tools"]
    assert {"libc6", "coreutils", "libc-bin"} <= closure.base
    with pytest.raises(DebianIndexError, match="no Debian package named 'nope'"):
        solver.closure(["nope"])
    with pytest.raises(DebianIndexError, match=r"cannot install broken:.*libfast1"):
        solver.closure(["broken"])


def test_versions_map_in_order() -> None:
    assert exo_version("3.40.1-2+deb12u2") == "3.40.1-2.deb12u2"
    assert exo_version("1:1.22.1-9") == "1.22.1-9.e1"
    assert exo_version("5:7.0.15-1~deb12u10") == "7.0.15-1.deb12u10.e5"


def _deb(base: Path, files: dict[str, str | None], links: dict[str, str]) -> Path:
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            (base / rel).mkdir()
        else:
            (base / rel).write_text(text)
    for rel, target in links.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, base / rel)
    return base


def test_merge_keeps_links_inside_and_drops_documentation(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    first = _deb(tmp_path / "a", {"usr/bin/tool-real": "#!/bin/sh\n",
                                  "usr/share/doc/a/copyright": "c",
                                  "etc/a/a.conf": "port 6379\n# port 26379\n"},
                 {"usr/bin/alias": "/usr/bin/tool-real"})
    second = _deb(tmp_path / "b", {"usr/bin/tool-real": "other\n", "usr/lib/x/libb.so.1": ""},
                  {"usr/bin/a": "tool-real"})
    own = merge(first, tree)
    merge(second, tree)
    assert os.readlink(tree / "usr/bin/alias") == "tool-real"  # absolute → inside prefix
    assert (tree / "usr/bin/tool-real").read_text() == "#!/bin/sh\n"  # first one wins
    assert not (tree / "usr/share/doc").exists()
    assert find_entry(tree, "alias", own) == "usr/bin/alias"
    assert find_entry(tree, "a", own) == "usr/bin/a"
    assert find_entry(tree, "zzz", own) == "usr/bin/alias"  # its own first program
    assert default_port(tree, own) == 6379
    os.symlink("../../../outside", tree / "usr/bin/escape")
    with pytest.raises(DebianError, match="which no bundled package holds"):
        find_entry(tree, "escape", own)
    clash = _deb(tmp_path / "c", {"usr/bin/tool-real/x": "dir where a file is"}, {})
    with pytest.raises(DebianError, match="a directory in one package"):
        merge(clash, tree)
    fifo = tmp_path / "d"
    (fifo / "run").mkdir(parents=True)
    os.mkfifo(fifo / "run" / "pipe")
    with pytest.raises(DebianError, match="special files"):
        merge(fifo, tree)


def test_wrapper_puts_bundled_libraries_first(tmp_path: Path) -> None:
    script = wrapper("usr/bin/tool", ["usr/lib/x86_64-linux-gnu"]).decode()
    assert script.startswith("#!/bin/sh\n")
    assert 'LD_LIBRARY_PATH="$p/usr/lib/x86_64-linux-gnu' in script
    assert script.endswith('exec "$p/usr/bin/tool" "$@"\n')
    # it really runs: the program sees the library path and its arguments
    app = tmp_path / "app"
    (app / "exo-bridge").mkdir(parents=True)
    (app / "usr/bin").mkdir(parents=True)
    (app / "usr/bin/tool").write_text('#!/bin/sh\necho "$LD_LIBRARY_PATH|$1"\n')
    (app / "usr/bin/tool").chmod(0o755)
    (app / "exo-bridge/tool").write_bytes(script.encode())
    (app / "exo-bridge/tool").chmod(0o755)
    import subprocess

    out = subprocess.run([str(app / "exo-bridge/tool"), "hi"], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin"}).stdout
    assert out == f"{app}/exo-bridge/../usr/lib/x86_64-linux-gnu|hi\n"


def test_library_check_finds_bundled_and_missing_libraries(tmp_path: Path) -> None:
    """A real ELF linked to a library of its own: found when bundled, refused by name
    when not (the host's loader answers, nothing runs the program)."""
    import shutil
    import subprocess

    from exo.pkg.debian import check_libraries, library_dirs

    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    tree = tmp_path / "tree"
    (tree / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tree / "usr/bin").mkdir(parents=True)
    (tmp_path / "lib.c").write_text("int exo_answer(void) { return 42; }\n")
    (tmp_path / "main.c").write_text("int exo_answer(void);\n"
                                     "int main(void) { return exo_answer() - 42; }\n")
    lib = tree / "usr/lib/x86_64-linux-gnu/libexoanswer.so.1"
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libexoanswer.so.1", "-o",
                    str(lib), str(tmp_path / "lib.c")], check=True)
    os.symlink("libexoanswer.so.1", lib.with_name("libexoanswer.so"))
    program = tree / "usr/bin/answer"
    subprocess.run(["cc", "-o", str(program), str(tmp_path / "main.c"),
                    f"-L{lib.parent}", "-lexoanswer"], check=True)
    dirs = library_dirs(tree)
    assert dirs == ["usr/lib/x86_64-linux-gnu"]
    check_libraries(program, tree, dirs)  # bundled: fine
    with pytest.raises(DebianError, match=r"answer needs libexoanswer\.so\.1, neither"):
        check_libraries(program, tree, [])
    script = tree / "usr/bin/script"
    script.write_text("#!/bin/sh\n")
    check_libraries(script, tree, [])  # not an ELF: nothing to load
