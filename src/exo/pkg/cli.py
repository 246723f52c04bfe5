"""The package commands: ``exo new/build/publish``, ``exo repo …``, ``exo install/remove/
upgrade/rollback/generations/list/search/info/verify``.

Registered on the ``exo`` group by one block at the end of ``exo.cli.commands``
(``register(main)``), like ``exo.security``'s. Heavy libraries (libsolv, tuf, zstd) load
inside the commands, so ``exo --help`` stays cheap. Every failure is one line on stderr
and a non-zero exit, and leaves the installed state as it was.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from exo.pkg.solve import Candidate, Plan
    from exo.pkg.store import Store

_ROOT_HELP = "Exo file tree (default: $EXO_ROOT, else ~/.local/share/exo)."
root_option = click.option("--root", type=click.Path(file_okay=False), help=_ROOT_HELP)
yes_option = click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
F = TypeVar("F", bound=Callable[..., Any])


def _root(root: str | None) -> Path:
    from exo.kernel.config import resolve_root

    return resolve_root(root)


def _fail(message: str, status: int = 1) -> NoReturn:
    click.echo(f"exo: {message}", err=True)
    raise SystemExit(status)


def _errors(fn: F) -> F:
    """Package errors become one line and exit status 1."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from exo.pkg import PkgError

        try:
            return fn(*args, **kwargs)
        except PkgError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"{exc.filename or ''}: {exc.strerror}".lstrip(": "))

    return wrapper  # type: ignore[return-value]


def _console() -> Any:
    from rich.console import Console

    return Console()


def _confirm(question: str) -> bool:
    """Ask; no answer (end of input, as without a terminal) is no."""
    try:
        return click.confirm(question, default=False)
    except click.Abort:
        return False


def register(main: click.Group) -> None:
    """Add the package commands to the ``exo`` command."""
    for cmd in (new, build, publish, repo, install, remove, upgrade, rollback, generations,
                list_, search, info, verify, gc):
        main.add_command(cmd)


# --------------------------------------------------------------------------- SDK


@click.command()
@click.argument("name")
@click.option("--template", type=click.Choice(["cli", "service", "agent"]), default="cli",
              show_default=True, help="What kind of app to start from.")
@_errors
def new(name: str, template: str) -> None:
    """Create ./NAME, a working project with its exopkg.toml."""
    from exo.pkg.sdk import new_project

    project = new_project(Path.cwd(), name, template)
    click.echo(f"created {project.name}/ ({template}); next: cd {name} && exo build")


@click.command()
@click.option("--release", is_flag=True, help="Compress harder (zstd 19).")
@click.option("--key", help="Signing key: file:NAME (default file:default) or hsm:NAME.")
@root_option
@_errors
def build(release: bool, key: str | None, root: str | None) -> None:
    """Build dist/NAME-VERSION.exopkg from the project in the current directory."""
    from exo.pkg import sign
    from exo.pkg.sdk import build as do_build

    out = do_build(Path.cwd(), release, key, _root(root))
    from exo.pkg import format as fmt

    pkg = fmt.read_package(out)
    click.echo(f"wrote {out.relative_to(Path.cwd())} ({out.stat().st_size} bytes, "
               f"{len(pkg.header.entries)} files, signed by {sign.fingerprint(pkg.public)[:16]})")


@click.command()
@click.option("--repo", "repo_dir", required=True,
              help="Repository directory, or the http:// URL of `exo repo serve`.")
@click.argument("package", type=click.Path(dir_okay=False), required=False)
@_errors
def publish(repo_dir: str, package: str | None) -> None:
    """Add PACKAGE (default: the newest dist/*.exopkg) to a repository."""
    from exo.pkg import PkgError
    from exo.pkg.sdk import publish as do_publish

    if package is None:
        built = sorted(Path("dist").glob("*.exopkg"), key=lambda p: p.stat().st_mtime)
        if not built:
            raise PkgError("no package given and none in dist/ (exo build)")
        package = str(built[-1])
    pkg = do_publish(Path(package), repo_dir)
    click.echo(f"published {pkg.manifest.name} {pkg.manifest.version} to {repo_dir}")


# ------------------------------------------------------------------- repositories


@click.group()
def repo() -> None:
    """Package repositories: directories or loopback HTTP, with TUF metadata."""


@repo.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--root-key", help="hsm:NAME: sign root metadata with this hybrid HSM key "
              "(exo keys create NAME --type hybrid) instead of key files.")
@click.option("--online-key", help="hsm:NAME: sign targets, snapshot and timestamp with "
              "this hybrid HSM key instead of key files.")
@root_option
@_errors
def repo_init(directory: str, root_key: str | None, online_key: str | None,
              root: str | None) -> None:
    """Create an empty signed repository in DIRECTORY."""
    from exo.pkg.repo import Repository

    Repository.init(Path(directory), root_key, online_key, _root(root))
    where = [f"{g} key: HSM {k.partition(':')[2]}" for g, k in
             (("root", root_key), ("online", online_key)) if k]
    if not (root_key and online_key):
        where.append(f"key files in {directory}/.keys: keep them private")
    click.echo(f"initialised repository {directory} ({'; '.join(where)})")


@repo.command("add")
@click.argument("name")
@click.argument("location")
@root_option
@_errors
def repo_add(name: str, location: str, root: str | None) -> None:
    """Use the repository at LOCATION (a directory or an http:// URL) under NAME."""
    from exo.pkg.repo import RepoClient

    client = RepoClient.add(_root(root), name, location)
    click.echo(f"added repository {name} ({client.url}): {len(client.candidates())} "
               "packages")


@repo.command("list")
@root_option
@_errors
def repo_list(root: str | None) -> None:
    """The configured repositories."""
    from exo.pkg.repo import RepoClient

    for client in RepoClient.all(_root(root)):
        click.echo(f"{client.name}\t{client.url}")


@repo.command("import-debian")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.argument("packages", nargs=-1, required=True)
@click.option("--key", help="Signing key: file:NAME (default file:default) or hsm:NAME.")
@root_option
@_errors
def repo_import_debian(directory: str, packages: tuple[str, ...], key: str | None,
                       root: str | None) -> None:
    """Fetch Debian PACKAGES with apt and publish them into the repository DIRECTORY."""
    from exo.pkg import sign
    from exo.pkg.debian import import_debian

    for line in import_debian(list(packages), Path(directory),
                              sign.load_signer(_root(root), key)):
        click.echo(f"published {line} (from Debian)")


@repo.command("serve")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--port", type=int, default=8765, show_default=True, help="0: any free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option("--allow-publisher", "allow", multiple=True, metavar="FINGERPRINT",
              help="Also take uploads signed by this key (16+ hex digits, as exo build "
              "prints); the repository's known publishers always may.")
@_errors
def repo_serve(directory: str, port: int, host: str, allow: tuple[str, ...]) -> None:
    """Serve the repository DIRECTORY over HTTP on loopback until interrupted; with its
    keys here, `exo publish --repo URL` uploads to it."""
    from exo.pkg.repo import serve
    from exo.pkg.upload import check_fingerprints

    check_fingerprints(allow)

    def ready(url: str) -> None:
        click.echo(f"serving {directory} at {url}", err=False)
        sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):
        serve(Path(directory), host, port, ready, allow)


# --------------------------------------------------------------------- installing


def _sources(root: Path) -> tuple[list[Candidate], dict[str, list[str]], dict[str, Any]]:
    """Refresh every repository; their candidates, trusted publishers and clients."""
    from exo.pkg import PkgError
    from exo.pkg.repo import RepoClient

    clients = {c.name: c for c in RepoClient.all(root)}
    if not clients:
        raise PkgError("no repository configured (exo repo add NAME DIR|URL)")
    cands: list[Candidate] = []
    for c in clients.values():
        c.refresh()
        cands += c.candidates()
    return cands, {n: c.publishers for n, c in clients.items()}, clients


def _installed(store: Store) -> list[Candidate]:
    from exo.pkg.solve import Candidate

    cur = store.current()
    if cur is None:
        return []
    return [Candidate(i.name, i.version, tuple(sorted(i.requires.items())), "installed")
            for i in cur.packages.values()]


def _show_permissions(plan: Plan) -> None:
    from rich.table import Column, Table

    table = Table("PACKAGE", "VERSION", "FROM",  # permissions are never cut short
                  Column("ASKS FOR", overflow="fold", min_width=24),
                  title="Packages to install", header_style="bold cyan")
    for c in plan.added:
        extra = c.extra or {}
        caps = "\n".join(extra.get("capabilities", [])) or "(no capabilities)"
        table.add_row(c.name, c.version, c.repo, caps)
    console = _console()
    console.print(table)
    for c in plan.removed:
        console.print(f"  [yellow]replaces[/] {c.name} {c.version}")


def _apply(root: Path, store: Store, plan: Plan, action: str, yes: bool,
           explicit: set[str], publishers: dict[str, list[str]], clients: dict[str, Any],
           ) -> None:
    """Show, confirm, download, verify, unpack, and switch to the next generation."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from exo.pkg import PkgError
    from exo.pkg import format as fmt
    from exo.pkg.store import Installed, crash_point

    if plan.empty:
        click.echo("nothing to do")
        return
    if plan.added:
        _show_permissions(plan)
    else:
        for c in plan.removed:
            click.echo(f"removes {c.name} {c.version}")
    if not yes and not _confirm("Proceed?"):
        raise PkgError("cancelled; nothing was changed")
    cur = store.current()
    before = cur.packages if cur else {}
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  console=_console(), transient=True) as progress:
        for c in plan.added:
            extra = c.extra or {}
            task = progress.add_task(f"{c.name} {c.version}", total=None)
            path = clients[c.repo].download(
                extra["path"], lambda done, total, t=task: progress.update(
                    t, completed=done, total=total or None))
            crash_point("downloaded")
            trusted = publishers[c.repo]
            pkg = fmt.read_package(path, trusted=trusted.__contains__)
            if (pkg.manifest.name, pkg.manifest.version) != (c.name, c.version):
                raise PkgError(f"{path.name} holds {pkg.manifest.name} "
                               f"{pkg.manifest.version}, not {c.name} {c.version}")
            store.unpack(pkg)
    packages = {}
    for name, c in plan.final.items():
        old = before.get(name)
        if old is not None and old.version == c.version:
            packages[name] = old
            continue
        extra = c.extra or {}
        packages[name] = Installed(name, c.version, extra.get("entry", ""),
                                   name in explicit or (old.explicit if old else False),
                                   dict(c.requires))
    gen = store.commit(packages, action)
    changes = [f"+{c.name} {c.version}" for c in plan.added]
    changes += [f"-{c.name} {c.version}" for c in plan.removed]
    click.echo(f"generation {gen.id} (parent {gen.parent}): {', '.join(changes)}")


def _parse_spec(spec: str) -> tuple[str, str | None]:
    name, _, version = spec.partition("==")
    return name.strip(), (version.strip() or None)


def _debian_repo(r: Path, packages: tuple[str, ...]) -> None:
    """``--from-debian``: bridge the packages into this tree's own ``debian`` repository
    (created and added on first use), skipping versions already there."""
    from exo.pkg import sign
    from exo.pkg.debian import import_debian
    from exo.pkg.repo import RepoClient, Repository

    directory = r / "var" / "lib" / "pkg" / "debian-repo"
    if not (directory / "metadata").exists():
        Repository.init(directory)
    if not (r / "var" / "lib" / "pkg" / "repos" / "debian").exists():
        RepoClient.add(r, "debian", str(directory))
    for line in import_debian(list(packages), directory, sign.load_signer(r),
                              skip_published=True):
        click.echo(f"bridged {line} from Debian")


@click.command()
@click.argument("packages", nargs=-1, required=True)
@click.option("--from-debian", is_flag=True,
              help="Fetch the packages with apt and bridge them first.")
@yes_option
@root_option
@_errors
def install(packages: tuple[str, ...], from_debian: bool, yes: bool,
            root: str | None) -> None:
    """Install NAME or NAME==VERSION (with what it needs), as a new generation."""
    from exo.pkg.solve import Solver
    from exo.pkg.store import Store

    r = _root(root)
    if from_debian:
        _debian_repo(r, packages)
    with Store(r).locked() as store:
        cands, publishers, clients = _sources(r)
        requests = [_parse_spec(p) for p in packages]
        plan = Solver(cands, _installed(store)).install(requests)
        _apply(r, store, plan, f"install {' '.join(packages)}", yes,
               {n for n, _ in requests}, publishers, clients)


@click.command()
@click.argument("packages", nargs=-1, required=True)
@yes_option
@root_option
@_errors
def remove(packages: tuple[str, ...], yes: bool, root: str | None) -> None:
    """Remove packages, as a new generation (their files stay for rollback)."""
    from exo.pkg.solve import Solver
    from exo.pkg.store import Store

    r = _root(root)
    with Store(r).locked() as store:
        installed = _installed(store)
        plan = Solver(installed, installed).remove(list(packages))
        _apply(r, store, plan, f"remove {' '.join(packages)}", yes, set(), {}, {})


@click.command()
@click.argument("packages", nargs=-1)
@yes_option
@root_option
@_errors
def upgrade(packages: tuple[str, ...], yes: bool, root: str | None) -> None:
    """Upgrade PACKAGES (default: everything installed) to their newest versions."""
    from exo.pkg.solve import Solver
    from exo.pkg.store import Store

    r = _root(root)
    with Store(r).locked() as store:
        cands, publishers, clients = _sources(r)
        plan = Solver(cands, _installed(store)).upgrade(list(packages))
        if plan.empty:
            click.echo("everything is up to date")
            return
        _apply(r, store, plan, "upgrade " + (" ".join(packages) or "all"), yes, set(),
               publishers, clients)


@click.command()
@click.option("--to", "to", type=int, help="Generation to switch to (default: the parent).")
@yes_option
@root_option
@_errors
def rollback(to: int | None, yes: bool, root: str | None) -> None:
    """Switch back to the previous generation (instant: one rename)."""
    from exo.pkg import PkgError
    from exo.pkg.store import Store

    with Store(_root(root)).locked() as store:
        cur = store.current()
        target = to if to is not None else (cur.parent if cur else None)
        if target is None:
            raise PkgError("nothing to roll back to: the current generation has no parent")
        if not yes and not _confirm(
                f"Switch from generation {cur.id if cur else '-'} to {target}?"):
            raise PkgError("cancelled; nothing was changed")
        gen = store.rollback(target)
        pkgs = ", ".join(f"{n} {i.version}" for n, i in gen.packages.items()) or "empty"
        click.echo(f"now at generation {gen.id} ({pkgs})")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@root_option
@_errors
def generations(as_json: bool, root: str | None) -> None:
    """The generations, each with its parent; * marks the current one."""
    import json
    import time

    from exo.pkg.store import Store

    store = Store(_root(root))
    cur = store.current()
    gens = store.generations()
    if as_json:
        click.echo(json.dumps([json.loads(g.to_json()) for g in gens], indent=1))
        return
    for g in gens:
        mark = "*" if cur and g.id == cur.id else " "
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(g.created))
        pkgs = ", ".join(f"{n} {i.version}" for n, i in g.packages.items()) or "-"
        click.echo(f"{mark} {g.id:>3}  parent {g.parent if g.parent else '-':>3}  {when}  "
                   f"{g.action:<24} {pkgs}")


@click.command("list")
@root_option
@_errors
def list_(root: str | None) -> None:
    """Installed packages, one a line: name, version, active or not."""
    from exo.pkg.store import Store

    store = Store(_root(root))
    cur = store.current()
    active = {(n, i.version) for n, i in cur.packages.items()} if cur else set()
    if not store.apps.is_dir():
        return
    for app in sorted(store.apps.iterdir()):
        for ver in sorted(p.name for p in app.iterdir() if not p.name.startswith(".")):
            state = "active" if (app.name, ver) in active else "inactive"
            click.echo(f"{app.name:<24} {ver:<12} {state}")


@click.command()
@click.argument("term", default="")
@root_option
@_errors
def search(term: str, root: str | None) -> None:
    """Packages whose name or description contains TERM."""
    cands, _, _ = _sources(_root(root))
    for c in sorted(cands, key=lambda c: (c.name, c.version)):
        desc = (c.extra or {}).get("description", "")
        if term.lower() in c.name.lower() or term.lower() in desc.lower():
            click.echo(f"{c.name:<24} {c.version:<12} {c.repo:<10} {desc}")


@click.command()
@click.argument("name")
@root_option
@_errors
def info(name: str, root: str | None) -> None:
    """What a package is, its versions, what it needs and the permissions it asks for."""
    from exo.pkg import PkgError

    cands = [c for c in _sources(_root(root))[0] if c.name == name]
    if not cands:
        raise PkgError(f"no package named {name!r} in any repository")
    for c in cands:
        extra = c.extra or {}
        click.echo(f"{c.name} {c.version} ({c.repo}): {extra.get('description', '')}")
        deps = ", ".join(f"{n} {s}".strip() for n, s in c.requires) or "none"
        click.echo(f"  requires: {deps}")
        click.echo(f"  asks for: {', '.join(extra.get('capabilities', [])) or 'nothing'}")
        click.echo(f"  binary:   {extra.get('binary', '')} {extra.get('entry', '')}")
        click.echo(f"  signer:   {extra.get('signer', '')[:16]}")


@click.command()
@click.argument("name")
@root_option
@_errors
def verify(name: str, root: str | None) -> None:
    """Re-hash the active version of NAME against its signed header."""
    from exo.pkg import PkgError
    from exo.pkg import format as fmt
    from exo.pkg.store import Store

    store = Store(_root(root))
    cur = store.current()
    if cur is None or name not in cur.packages:
        raise PkgError(f"{name} is not installed")
    version = cur.packages[name].version
    problems = fmt.verify_installed(store.app_dir(name, version))
    if problems:
        raise PkgError(f"{name} {version}: " + "; ".join(problems))
    click.echo(f"{name} {version}: all files match the signed header")


@click.command()
@click.option("--keep", type=click.IntRange(0, 10_000), default=0, show_default=True,
              help="Also keep this many of the newest generations.")
@click.option("-y", "--yes", is_flag=True, help="Remove; without it, only show what "
              "would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@root_option
@_errors
def gc(keep: int, yes: bool, as_json: bool, root: str | None) -> None:
    """Remove old generations, the app versions only they use, and cached downloads;
    keeps the current generation and the one rollback goes to. Shows what it would
    remove unless -y."""
    import json

    from exo.pkg import gc as collector
    from exo.pkg.store import Store

    with Store(_root(root)).locked() as store:
        todo = collector.plan(store, keep)
        if yes:
            collector.apply(store, todo)
    if as_json:
        click.echo(json.dumps({"removed" if yes else "would_remove": {
            "generations": todo.generations,
            "apps": [{"name": n, "version": v} for n, v in todo.apps],
            "cached": len(todo.cached)}, "kept_generations": todo.kept,
            "bytes": todo.bytes}))
        return
    if todo.empty:
        click.echo("nothing to remove (kept generations: "
                   f"{', '.join(map(str, todo.kept)) or 'none'})")
        return
    size = f"{todo.bytes / 1e6:.1f} MB"
    if yes:
        click.echo(f"removed {', '.join(todo.describe())} ({size})")
    else:
        click.echo(f"would remove {', '.join(todo.describe())} ({size}); keeps generations "
                   f"{', '.join(map(str, todo.kept))}. Run exo gc -y to remove them.")
