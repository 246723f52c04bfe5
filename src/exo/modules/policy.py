"""What an Exo root lets modules do: ``etc/modules/policy.toml``, read at every load.

```toml
allow = ["echo", "net-*"]            # package names (shell patterns) that may load
[grants]                             # more than a module's own service, module:// name
echo = ["storage://var/lib/shared"]  # and data directory, per module
[limits]
memory = 268435456                   # the most memory a module may ask for, bytes
```

No file: every module signed by a trusted key may load, holding its own names only. The
file is the administrator's; a malformed one refuses every load with a line saying what
is wrong in it, rather than letting a mistake widen what modules may do.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from exo.modules import ModuleError

MAX_POLICY_BYTES = 1 << 20
DEFAULT_MEMORY = 1 << 30  # the default of every Exo process


@dataclass(frozen=True)
class ModulePolicy:
    allow: tuple[str, ...] | None = None  # None: every name
    grants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    memory: int = DEFAULT_MEMORY
    path: str = ""

    def allows(self, name: str) -> bool:
        return self.allow is None or any(fnmatch.fnmatchcase(name, p) for p in self.allow)

    def extra(self, name: str) -> tuple[str, ...]:
        return self.grants.get(name, ())


def policy_path(root: Path) -> Path:
    return root / "etc" / "modules" / "policy.toml"


def load_policy(root: Path) -> ModulePolicy:
    path = policy_path(root)
    shown = "etc/modules/policy.toml"
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_POLICY_BYTES + 1)
    except FileNotFoundError:
        return ModulePolicy()
    except OSError as exc:
        raise ModuleError(f"{shown}: cannot read it: {exc.strerror}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise ModuleError(f"{shown}: larger than {MAX_POLICY_BYTES >> 10} KiB")
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ModuleError(f"{shown}: not valid TOML: {exc}") from None
    unknown = set(data) - {"allow", "grants", "limits"}
    if unknown:
        raise ModuleError(f"{shown}: unknown key {sorted(unknown)[0]!r} "
                          "(allow, grants, limits)")
    allow = data.get("allow")
    if allow is not None and not (isinstance(allow, list)
                                  and all(isinstance(a, str) for a in allow)):
        raise ModuleError(f"{shown}: allow must be a list of module names")
    grants_raw = data.get("grants", {})
    if not isinstance(grants_raw, dict) or not all(
            isinstance(v, list) and all(isinstance(g, str) for g in v)
            for v in grants_raw.values()):
        raise ModuleError(f"{shown}: [grants] maps a module name to a list of resources")
    limits = data.get("limits", {})
    memory = limits.get("memory", DEFAULT_MEMORY) if isinstance(limits, dict) else None
    if type(memory) is not int or memory <= 0:
        raise ModuleError(f"{shown}: [limits] memory must be a positive number of bytes")
    return ModulePolicy(tuple(allow) if allow is not None else None,
                        {k: tuple(v) for k, v in grants_raw.items()}, memory, shown)
