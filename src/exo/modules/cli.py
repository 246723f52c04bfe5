"""``exo module load|list|upgrade|rollback|unload``: each is one control-socket call to
the running kernel's module manager. Failures are one line on stderr, exit status 1."""

from __future__ import annotations

import json
import os
from typing import Any

import click

_ROOT_HELP = "Exo root of the running kernel (default: $EXO_ROOT or the user data dir)."


def register(main: click.Group) -> None:
    """Add ``exo module`` to the ``exo`` command."""
    main.add_command(module)


def _call(root: str | None, op: str, **args: Any) -> Any:
    from exo.kernel.control import ControlClient, KernelError, KernelNotRunning

    try:
        return ControlClient.connect(root).call(op, **args)
    except (KernelNotRunning, KernelError) as exc:
        click.echo(f"exo module: {exc}", err=True)
        raise SystemExit(1) from None


_root = click.option("--root", type=click.Path(file_okay=False), help=_ROOT_HELP)


@click.group()
def module() -> None:
    """Hot-reloadable modules of the running kernel (docs/modules.md)."""


@module.command()
@click.argument("spec", metavar="PATH|NAME")
@_root
def load(spec: str, root: str | None) -> None:
    """Verify a signed module package and start it (or keep a new version for upgrade)."""
    if os.path.exists(spec):
        spec = os.path.abspath(spec)  # the kernel does not share our working directory
    click.echo(_call(root, "module_load", spec=spec)["message"])


@module.command("list")
@_root
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_(root: str | None, as_json: bool) -> None:
    """Name, versions, traffic split and health of each loaded module."""
    rows: list[dict[str, Any]] = _call(root, "module_list")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no modules loaded")
        return
    click.echo(f"{'NAME':16} {'SERVICE':20} {'VERSIONS (traffic)':28} HEALTH")
    for r in rows:
        versions = ", ".join(f"{v['version']} ({v['traffic']}%)" for v in r["versions"])
        health = ", ".join(f"{v['version']}: {v['health']}" for v in r["versions"])
        click.echo(f"{r['name']:16} {r['service']:20} {versions:28} {health}")
        device = r.get("device")
        if device:
            where = ", ".join(f"{k} {device[k]}" for k in
                              ("interface", "address", "peer", "netns", "tty") if k in device)
            click.echo(f"  device: {where}; {device['received']} in, {device['sent']} out, "
                       f"{device['dropped']} dropped")
        if r.get("failed"):
            click.echo(f"  failed: {r['failed']}")
        elif r.get("restarts"):
            click.echo(f"  restarted {r['restarts']} times after a crash")


@module.command()
@click.argument("name")
@click.option("--version", "version", required=True, help="Version to move to.")
@click.option("--canary", type=click.IntRange(1, 100), default=10, show_default=True,
              help="First share of traffic for the new version, percent.")
@click.option("--step", type=click.IntRange(0, 100), default=30, show_default=True,
              help="Share added at each interval, percent (0: straight to 100 %).")
@click.option("--interval", type=click.FloatRange(0, 3600), default=0.5, show_default=True,
              help="Seconds between steps (health and error rate checked at each).")
@_root
def upgrade(name: str, version: str, canary: int, step: int, interval: float,
            root: str | None) -> None:
    """Upgrade NAME without a reboot: canary, steps, 100 %; rolls back by itself."""
    result = _call(root, "module_upgrade", name=name, version=version, canary=canary,
                   step=step, interval=interval)
    if result.get("rolled_back"):
        click.echo(f"exo module: {result['message']}", err=True)
        raise SystemExit(1)
    click.echo(result["message"])


@module.command()
@click.argument("name")
@_root
def rollback(name: str, root: str | None) -> None:
    """Back to the version before the last upgrade, all traffic at once."""
    click.echo(_call(root, "module_rollback", name=name)["message"])


@module.command()
@click.argument("name")
@_root
def unload(name: str, root: str | None) -> None:
    """Drain and stop every version of NAME."""
    click.echo(_call(root, "module_unload", name=name)["message"])
