"""``posix-x analyze``: what a Linux program will need under POSIX-X, read from its file.

An ELF file says a lot without running it: its interpreter (``PT_INTERP``), the libraries it
needs (``DT_NEEDED``), the functions it imports (undefined dynamic symbols) and the path
names it carries in its read-only data. Imported libc functions map to syscalls
(``libc_map``), syscalls to tiers (``table``); from those come the capabilities the program
needs, a compatibility score and a suggested manifest. A script with ``#!`` is analysed
through its interpreter, and the report says so. ``posix-x profile`` (a run under the
sandbox) sees what the file cannot: syscalls made through other libraries or raw
``syscall()``, and the actual paths and ports.

Everything read here is hostile input: any file, truncated or crafted, gives either a report
or one ``AnalyzeError`` line, never a traceback. The ELF is parsed by pyelftools.

Compatibility score (0–100) over the distinct syscalls the program can make (the start-up
set of its linkage plus those of its imported functions), each weighted by its tier: fast
1.0, hybrid 0.9 (it works, mediated by the kernel outside the granted tree), legacy
emulated 0.75 (it works through a fallback, e.g. ``clone3`` → ``clone``), legacy refused 0.
``score = 100 × Σ weight / count``.
"""

from __future__ import annotations

import os
import re
import shutil

from exo._printable import printable

from . import libc_map, table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from elftools.elf.elffile import ELFFile
    from rich.console import Console

WEIGHTS = {table.FAST: 1.0, table.HYBRID: 0.9, "emulated": 0.75, "refused": 0.0}
# Legacy rows that still work, through a fallback the program's libc takes by itself.
EMULATED = frozenset({"clone3"})

_MAX_INTERPRETER_DEPTH = 4  # Linux allows a chain of at most 4 interpreters (BINPRM)
_SHEBANG_MAX = 256  # BINPRM_BUF_SIZE: Linux reads no more of a #! line
_MAX_LIBRARIES = 200
_MAX_RODATA = 32 << 20
_MAX_PATHS = 200
_PATH_RE = re.compile(rb"/[A-Za-z0-9._+@-]+(?:/[A-Za-z0-9._+@-]+)*/?")
# Paths are taken from constant strings only when they start with a standard top-level
# directory: that keeps format fragments and build-tree names ("/.libs") out.
_FHS_TOP = frozenset(b"bin boot dev etc home lib lib32 lib64 libx32 media mnt opt proc root "
                     b"run sbin srv sys tmp usr var".split())
_LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
             "/lib", "/usr/lib", "/usr/local/lib")
# Host directories POSIX-X shows read-only when [posix_x] system_dirs = true.
SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc")
# Never visible, whatever a manifest says (issue 10).
SENSITIVE = ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh/ssh_host_",
             "/etc/ssl/private", "/root", "/home")
# Provided by the sandbox itself: a fresh /proc, a minimal /dev, a private /tmp.
PROVIDED = ("/proc", "/dev", "/sys", "/tmp", "/var/tmp")
_EXEC_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/libexec/",
              "/usr/local/bin/", "/usr/local/sbin/")


class AnalyzeError(Exception):
    """One line saying why a file cannot be analysed."""


class Report:
    """What ``analyze`` found; ``as_dict`` is the ``--json`` form."""

    __slots__ = (
        "capabilities",
        "elf",
        "functions",
        "imports",
        "libraries",
        "manifest",
        "path",
        "paths",
        "score",
        "scripts",
        "syscalls",
        "warnings",
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self.scripts: list[dict[str, str]] = []  # the #! chain, outermost first
        self.elf: dict[str, object] = {}
        self.libraries: list[str] = []  # libraries whose imports were read (--deep)
        self.imports: list[str] = []
        self.functions: dict[str, tuple[str, ...]] = {}  # imported function → syscalls
        self.syscalls: list[dict[str, object]] = []
        self.paths: list[dict[str, str]] = []
        self.capabilities: list[dict[str, str]] = []
        self.warnings: list[str] = []
        self.score: float | None = None
        self.manifest = ""

    def tier_counts(self) -> dict[str, int]:
        result = dict.fromkeys(table.TIERS, 0)
        for s in self.syscalls:
            result[str(s["tier"])] += 1
        return result

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "scripts": self.scripts, "elf": self.elf,
                "libraries": self.libraries, "imports": len(self.imports),
                "functions": {k: list(v) for k, v in sorted(self.functions.items())},
                "syscalls": self.syscalls, "tiers": self.tier_counts(),
                "capabilities": self.capabilities, "paths": self.paths,
                "warnings": self.warnings, "score": self.score, "manifest": self.manifest}


def analyze(path: str, *, deep: bool = False) -> Report:
    """Analyse the program at ``path`` (an ELF or a ``#!`` script). ``deep`` also reads the
    imports of the libraries it needs (found in the usual directories and its RUNPATH)."""
    report = Report(path)
    target = _follow_scripts(path, report)
    with _open(target) as stream:
        try:
            _read_elf(stream, target, report, deep=deep)
        except AnalyzeError:
            raise
        except Exception as exc:  # hostile input: pyelftools may fail in many ways
            raise AnalyzeError(f"{target}: malformed or truncated ELF file "
                               f"({_summary(exc)})") from None
    _conclude(report)
    return report


def _clean(text: str) -> str:
    """Text read from the file, safe on a terminal and inside a TOML comment or string."""
    return printable(text, newlines=False)


def _summary(exc: BaseException) -> str:
    text = _clean(" ".join(str(exc).split())[:160])
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _open(path: str) -> BinaryIO:
    """The file opened for reading, or one line saying why not. Opened non-blocking and
    checked through its descriptor, so a FIFO swapped in after a check cannot hang us."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise AnalyzeError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AnalyzeError(f"{path}: is a directory") from None
    except OSError as exc:
        raise AnalyzeError(f"{path}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "is a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise AnalyzeError(f"{path}: {kind}")
    return os.fdopen(fd, "rb")


def _head(path: str) -> bytes:
    with _open(path) as f:
        try:
            return f.read(_SHEBANG_MAX)
        except OSError as exc:
            raise AnalyzeError(f"{path}: {exc.strerror or exc}") from None


def _follow_scripts(path: str, report: Report) -> str:
    """Follow ``#!`` lines to the ELF interpreter, as execve would."""
    current = path
    for _ in range(_MAX_INTERPRETER_DEPTH + 1):
        head = _head(current)
        if head.startswith(b"\x7fELF"):
            return current
        if not head.startswith(b"#!"):
            raise AnalyzeError(f"{current}: not an ELF executable or a script with #!")
        line = head[2:].split(b"\n", 1)[0].strip()
        if not line:
            raise AnalyzeError(f"{current}: empty #! line")
        if b"\0" in line:
            raise AnalyzeError(f"{current}: NUL byte in the #! line")
        words = line.decode("utf-8", "replace").split(None, 1)  # as Linux: space or tab
        interpreter = _clean(words[0])
        argument = _clean(words[1].strip()) if len(words) > 1 else ""
        if not interpreter.startswith("/"):
            raise AnalyzeError(f"{current}: #! interpreter {interpreter!r} is not an "
                               "absolute path")
        entry = {"script": current, "interpreter": interpreter, "argument": argument}
        resolved = interpreter
        if os.path.basename(interpreter) == "env" and argument:
            program = next((w for w in argument.split() if not w.startswith("-")), "")
            found = shutil.which(program) if program else None
            if found is None:
                raise AnalyzeError(f"{current}: #! {interpreter} {argument}: "
                                   f"{program or 'no program'} not found on PATH")
            entry["program"] = found
            resolved = found
            report.warnings.append(f"{current} runs {found} through {interpreter}: "
                                   f"grant exec of both")
        report.scripts.append(entry)
        current = resolved
    raise AnalyzeError(f"{path}: more than {_MAX_INTERPRETER_DEPTH} levels of #! interpreters")


def _read_elf(stream: BinaryIO, path: str, report: Report, *, deep: bool) -> None:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.segments import InterpSegment

    elf = ELFFile(stream)
    interpreter = ""
    for segment in elf.iter_segments():
        if isinstance(segment, InterpSegment):
            interpreter = _clean(segment.get_interp_name())
    needed, runpath = _dynamic(elf)
    imports, defined = _symbols(elf)
    linkage = "dynamic" if (interpreter or needed) else "static"
    report.elf = {"path": path, "class": elf.elfclass, "machine": elf["e_machine"],
                  "type": elf["e_type"], "linkage": linkage, "interpreter": interpreter or None,
                  "needed": needed}
    if elf["e_machine"] != "EM_X86_64":
        report.warnings.append(f"{path} is for {elf['e_machine']}, not x86-64: the syscall "
                               "table is x86-64's and the sandbox kills other ABIs")
    if linkage == "static":
        if defined:
            imports = defined
            report.warnings.append("statically linked: the libc functions linked in are read "
                                   "from its symbol table; run posix-x profile to confirm")
        else:
            report.warnings.append("statically linked and stripped: its syscalls cannot be "
                                   "read from the file; run posix-x profile")
    report.imports = sorted(imports)
    report.paths = _classify_paths(_rodata_paths(elf))
    if deep and needed:
        extra = _library_imports(path, needed, runpath, report)
        report.imports = sorted(set(report.imports) | extra)


def _dynamic(elf: ELFFile) -> tuple[list[str], list[str]]:
    from elftools.elf.dynamic import DynamicSection, DynamicSegment

    needed: list[str] = []
    runpath: list[str] = []
    tables: list[DynamicSection | DynamicSegment]
    tables = [s for s in elf.iter_sections() if isinstance(s, DynamicSection)]
    if not tables:  # no section headers: the PT_DYNAMIC segment says the same
        tables = [s for s in elf.iter_segments() if isinstance(s, DynamicSegment)]
    for dyn in tables[:1]:
        for tag in dyn.iter_tags():
            kind = tag.entry.d_tag
            if kind == "DT_NEEDED":
                needed.append(_clean(str(getattr(tag, "needed", ""))))
            elif kind in ("DT_RUNPATH", "DT_RPATH"):
                value = getattr(tag, "runpath" if kind == "DT_RUNPATH" else "rpath", "")
                runpath.extend(p for p in str(value).split(":") if p)
    return needed, runpath


def _symbols(elf: ELFFile) -> tuple[set[str], set[str]]:
    """Undefined dynamic symbols (imports) and defined functions of ``.symtab``."""
    from elftools.elf.dynamic import DynamicSegment
    from elftools.elf.sections import SymbolTableSection

    imports: set[str] = set()
    defined: set[str] = set()
    dynsym = elf.get_section_by_name(".dynsym")
    symbols: list[object] = []
    if isinstance(dynsym, SymbolTableSection):
        symbols = list(dynsym.iter_symbols())
    elif elf.num_sections() == 0:
        for seg in elf.iter_segments():
            if isinstance(seg, DynamicSegment):
                symbols = list(seg.iter_symbols())
    for sym in symbols:
        name = getattr(sym, "name", "")
        if name and sym["st_shndx"] == "SHN_UNDEF":  # type: ignore[index]
            imports.add(_clean(name.partition("@")[0]))
    symtab = elf.get_section_by_name(".symtab")
    if isinstance(symtab, SymbolTableSection):
        for sym in symtab.iter_symbols():
            info = sym["st_info"]
            if (sym.name and sym["st_shndx"] != "SHN_UNDEF" and info["type"] == "STT_FUNC"
                    and info["bind"] in ("STB_GLOBAL", "STB_WEAK")):
                defined.add(_clean(sym.name))
    return imports, defined


def _rodata_paths(elf: ELFFile) -> list[str]:
    """Absolute path names among the file's constant strings, in order of appearance."""
    found: dict[str, None] = {}
    for name in (".rodata", ".data.rel.ro", ".data"):
        section = elf.get_section_by_name(name)
        if section is None or section["sh_type"] == "SHT_NOBITS":
            continue
        data = section.data()[:_MAX_RODATA]
        for chunk in data.split(b"\0"):
            if (3 < len(chunk) < 256 and chunk[:1] == b"/" and _PATH_RE.fullmatch(chunk)
                    and chunk[1:].split(b"/", 1)[0] in _FHS_TOP):
                found.setdefault(chunk.decode("ascii").rstrip("/") or "/", None)
                if len(found) >= _MAX_PATHS:
                    return list(found)
    return list(found)


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r + "/") for r in roots)


def _sensitive(path: str) -> bool:
    """``/etc/sudoers`` and ``ssh_host_`` are prefixes (sudoers.d, every host key)."""
    return any(path.startswith(s) if s.endswith(("_", "sudoers")) else _under(path, (s,))
               for s in SENSITIVE)


def _classify_paths(paths: list[str]) -> list[dict[str, str]]:
    """Say, for each path the program names, how POSIX-X would let it reach it."""
    result = []
    for p in paths:
        if _sensitive(p):
            kind, how = "refused", "never visible under POSIX-X"
        elif _under(p, PROVIDED):
            kind, how = "provided", "the sandbox's own /proc, /dev or private /tmp"
        elif _under(p, SYSTEM_DIRS):
            kind, how = "system", "read-only with [posix_x] system_dirs = true"
        else:
            kind, how = "state", f"a storage:// capability: {_storage_name(p)}"
        result.append({"path": p, "kind": kind, "how": how})
    return result


def _storage_name(path: str) -> str:
    """The storage:// name POSIX-X binds at ``path`` (the Exo tree mirrors the host's):
    a file-looking name below a second-level directory grants that directory."""
    parts = [p for p in path.split("/") if p]
    if len(parts) > 2 and "." in parts[-1]:
        parts = parts[:-1]
    return "storage://" + "/".join(parts)


def _resolve_library(name: str, origin: str, runpath: list[str]) -> str | None:
    if "/" in name:
        return name if os.path.isfile(name) else None
    dirs = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for d in runpath]
    for d in (*dirs, *_LIB_DIRS):
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _library_imports(path: str, needed: list[str], runpath: list[str],
                     report: Report) -> set[str]:
    """Imports of the needed libraries, transitively, except libc's and the loader's own."""
    from elftools.elf.elffile import ELFFile

    seen: set[str] = set()
    queue = [(n, os.path.dirname(os.path.abspath(path)), runpath) for n in needed]
    result: set[str] = set()
    while queue and len(seen) < _MAX_LIBRARIES:
        name, origin, rpath = queue.pop(0)
        if name in seen or name.startswith(("libc.so", "ld-linux", "libdl.so", "libpthread.so",
                                            "librt.so", "libm.so")):
            continue
        seen.add(name)
        found = _resolve_library(name, origin, rpath)
        if found is None:
            report.warnings.append(f"needed library {name} not found")
            continue
        try:
            with _open(found) as f:
                elf = ELFFile(f)
                lib_needed, lib_runpath = _dynamic(elf)
                imports, _ = _symbols(elf)
        except Exception as exc:  # a broken library is reported, not fatal
            report.warnings.append(f"{found}: unreadable ({_summary(exc)})")
            continue
        report.libraries.append(found)
        result |= imports
        queue.extend((n, os.path.dirname(found), lib_runpath) for n in lib_needed)
    return result


def _needed(report: Report) -> list[str]:
    needed = report.elf.get("needed")
    return [str(n) for n in needed] if isinstance(needed, list) else []


def _weight(s: table.Syscall) -> float:
    if s.tier == table.LEGACY:
        return WEIGHTS["emulated"] if s.name in EMULATED else WEIGHTS["refused"]
    return WEIGHTS[s.tier]


def _conclude(report: Report) -> None:
    """Syscalls, tiers, capabilities, score and manifest from what was read."""
    imports = set(report.imports)
    report.functions = {f: libc_map.LIBC_SYSCALLS[f] for f in imports
                        if f in libc_map.LIBC_SYSCALLS}
    via: dict[str, list[str]] = {}
    linkage = report.elf.get("linkage")
    startup = libc_map.STARTUP_STATIC if linkage == "static" else libc_map.STARTUP_DYNAMIC
    for name in startup:
        via.setdefault(name, []).append("(start-up)")
    for function, calls in sorted(report.functions.items()):
        for name in calls:
            via.setdefault(name, []).append(function)
    rows = sorted((table.BY_NAME[n] for n in via), key=lambda s: s.number)
    report.syscalls = [{"name": s.name, "number": s.number, "tier": s.tier,
                        "errno": s.errno or None, "emulated": s.name in EMULATED,
                        "cap": s.cap or None, "via": via[s.name]} for s in rows]
    known = bool(report.functions) or linkage == "dynamic"
    report.score = (round(100 * sum(_weight(s) for s in rows) / len(rows), 1)
                    if rows and known else None)
    for s in rows:
        if s.tier == table.LEGACY and s.name not in EMULATED:
            report.warnings.append(f"{s.name} (from {', '.join(via[s.name][:3])}) is refused "
                                   f"with {s.errno}: {s.note}")
    if imports & libc_map.RAW_SYSCALL_FUNCTIONS:
        report.warnings.append("imports syscall(): raw syscalls are invisible here; run "
                               "posix-x profile")
    for p in report.paths:
        if p["kind"] == "refused":
            report.warnings.append(f"names {p['path']}: {p['how']}")
    report.capabilities = _capabilities(report, imports)
    report.manifest = suggest_manifest(report)


def _capabilities(report: Report, imports: set[str]) -> list[dict[str, str]]:
    caps: list[dict[str, str]] = []
    if report.elf.get("linkage") == "dynamic" or report.scripts:
        libs = _needed(report)
        needed = ", ".join(libs[:4]) + (f" and {len(libs) - 4} more" if len(libs) > 4 else "")
        needed = needed or "its interpreter"
        caps.append({"key": "posix_x.system_dirs", "value": "true",
                     "why": f"loads {needed} from the system directories (read-only)"})
    net = sorted(imports & libc_map.NETWORK_FUNCTIONS)
    if net:
        server = bool(imports & libc_map.SERVER_FUNCTIONS)
        caps.append({"key": "net", "value": "net://loopback=SEND,RECV",
                     "why": f"{'listens' if server else 'connects'} ({', '.join(net[:4])}): "
                            "narrow to the host and port it uses"})
    forks = sorted(imports & libc_map.FORK_FUNCTIONS)
    if forks:
        caps.append({"key": "posix_x.fork", "value": "true",
                     "why": f"creates processes ({', '.join(forks[:4])})"})
    programs = _exec_programs(report, imports)
    if programs is not None:
        caps.append({"key": "posix_x.exec", "value": ", ".join(programs) or "[]",
                     "why": "runs other programs ("
                            f"{', '.join(sorted(imports & libc_map.EXEC_FUNCTIONS)[:4])})"})
    for p in report.paths:
        if p["kind"] == "state":
            caps.append({"key": "storage", "value": f"{_storage_name(p['path'])}=READ,WRITE",
                         "why": f"names {p['path']}"})
    return caps


def _exec_programs(report: Report, imports: set[str]) -> list[str] | None:
    if not imports & libc_map.EXEC_FUNCTIONS:
        return None
    programs = ["/bin/sh"] if imports & libc_map.SHELL_FUNCTIONS else []
    programs += [p["path"] for p in report.paths
                 if p["path"].startswith(_EXEC_DIRS) and p["path"] not in programs]
    return programs


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def suggest_manifest(report: Report) -> str:
    """A starting manifest: the capabilities the analysis found, each line commented with
    why. ``[posix_x]`` is the extension docs/posix-x.md proposes."""
    caps = report.capabilities
    storage = list(dict.fromkeys(c["value"] for c in caps if c["key"] == "storage"))
    net = [c for c in caps if c["key"] == "net"]
    keys = {c["key"]: c for c in caps}
    program = report.scripts[0]["script"] if report.scripts else report.path
    lines = [f"# Suggested by posix-x analyze for {program}; review before use.",
             "[sandbox]", "capabilities = ["]
    lines += [f"    {_toml_str(s)}," for s in storage]
    lines.append("]")
    if net:
        lines += [f"# {net[0]['why']}", f"network = [{_toml_str(net[0]['value'])}]"]
    forks = "posix_x.fork" in keys
    threads = bool(set(report.imports) & {"pthread_create", "clone", "clone3"})
    lines += ["", "[limits]", 'memory = "512M"', f"pids = {64 if forks or threads else 8}",
              "", "[posix_x]"]
    if "posix_x.system_dirs" in keys:
        lines += [f"# {keys['posix_x.system_dirs']['why']}", "system_dirs = true"]
    lines.append(f"fork = {'true' if forks else 'false'}")
    exec_cap = keys.get("posix_x.exec")
    programs = [p["interpreter"] for p in report.scripts]
    programs += [p["program"] for p in report.scripts if "program" in p]
    if exec_cap is not None:
        lines.append(f"# {exec_cap['why']}")
        programs += [p for p in exec_cap["value"].split(", ") if p.startswith("/")]
    lines.append("exec = [" + ", ".join(_toml_str(p) for p in dict.fromkeys(programs)) + "]")
    return "\n".join(lines) + "\n"


def render(report: Report, console: Console | None = None) -> None:
    """Print the report the way the seeds show it (rich; plain text when not a terminal)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = console if console is not None else Console()
    for s in report.scripts:
        out.print(f"[bold]{escape(s['script'])}[/]: script, interpreted by "
                  f"{escape(s.get('program') or s['interpreter'])} (analysed below)")
    elf = report.elf
    needed = ", ".join(_needed(report)) or "none"
    out.print(f"[bold]{escape(str(elf['path']))}[/]: ELF {elf['class']}-bit "
              f"{str(elf['machine']).removeprefix('EM_')}, {elf['linkage']}ally linked"
              + (f", interpreter {escape(str(elf['interpreter']))}" if elf["interpreter"] else "")
              + f"; needs {escape(needed)}; {len(report.imports)} "
              + ("functions linked in" if elf["linkage"] == "static" else "imported symbols"))
    marks = {table.FAST: "[green]✓[/]", table.HYBRID: "[yellow]~[/]", table.LEGACY: "[red]✗[/]"}
    words = {table.FAST: "fast path (native)", table.HYBRID: "hybrid path (kernel-mediated "
             "outside the granted tree)", table.LEGACY: "legacy path"}
    for tier in table.TIERS:
        calls = [s for s in report.syscalls if s["tier"] == tier]
        if not calls:
            continue
        names = [str(s["name"]) + (" (emulated)" if s["emulated"] else
                                   f" ({s['errno']})" if s["errno"] else "") for s in calls]
        shown = ", ".join(names[:12]) + (f", … {len(names) - 12} more" if len(names) > 12 else "")
        out.print(f"  {marks[tier]} {escape(shown)} : {words[tier]}")
    grid = Table(title="imported functions → syscalls", show_lines=False)
    grid.add_column("function")
    grid.add_column("syscalls")
    grid.add_column("tier")
    for function, issued in sorted(report.functions.items()):
        tiers = {table.BY_NAME[c].tier for c in issued}
        worst = next(t for t in reversed(table.TIERS) if t in tiers)
        grid.add_row(escape(function), escape(" ".join(issued)), worst)
    if report.functions:
        out.print(grid)
    if report.capabilities:
        out.print("[bold]Capabilities needed[/]:")
        for c in report.capabilities:
            out.print(f"  • {escape(c['key'])} = {escape(c['value'])}  — {escape(c['why'])}")
    for w in report.warnings:
        out.print(f"  [yellow]⚠[/] {escape(w)}")
    counts = report.tier_counts()
    total = sum(counts.values()) or 1
    out.print("Syscall mix: " + ", ".join(f"{t} {100 * counts[t] / total:.0f}%"
                                          for t in table.TIERS))
    score = "unknown (run posix-x profile)" if report.score is None else f"{report.score:.0f}%"
    out.print(f"[bold]Compatibility score: {score}[/]")
    out.print("[bold]Suggested manifest[/]:")
    out.print(escape(report.manifest), highlight=False)
