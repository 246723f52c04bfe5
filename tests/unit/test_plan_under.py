"""``_bwrap._under`` (which mount a path lies under, by looking its ancestors up in a set)
answers exactly what comparing the path with every mount point did; ``check_grant``'s
set lookups refuse what its comparisons did."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from exo.sandbox import SandboxError
from exo.sandbox._bwrap import _FORBIDDEN_INSIDE, _PROTECTED, _under, check_grant


def _compared(path: str, tops: set[str]) -> bool:
    return any(path == m or path.startswith(m + "/") for m in tops)


def test_under_agrees_with_comparing_every_mount_point() -> None:
    rng = random.Random(7)
    names = ["a", "b", "ab", "etc", "usr", "lib", "x.y", "a b"]
    paths = ["/" + "/".join(rng.choice(names) for _ in range(rng.randint(1, 4)))
             for _ in range(300)]
    for _ in range(200):
        tops = set(rng.sample(paths, rng.randint(0, 6)))
        if rng.random() < 0.05:
            tops.add("")  # "/" bound: every path is under it
        for path in [*rng.sample(paths, 20), "/"]:
            assert _under(path, tops) == _compared(path, tops), (path, tops)


def test_check_grant_refuses_what_comparing_every_listed_path_refused(tmp_path: Path) -> None:
    """The protected, forbidden and system paths looked up as sets (with their ancestors)
    refuse exactly the grants the one-by-one comparisons refused."""
    system = (Path("/usr"), Path("/lib"), Path("/bin"))

    def within(p: str, q: str) -> bool:
        return p == q or p.startswith(q.rstrip("/") + "/")

    def refused(path: str, what: str) -> bool:
        return (any(within(p, path) for p in _PROTECTED)
                or any(within(path, f) for f in _FORBIDDEN_INSIDE)
                or (what == "write" and any(within(path, str(s)) or within(str(s), path)
                                            for s in system)))

    candidates = ["/", "/etc", "/etc/ssl", "/etc/ssl/certs", "/etc/hostname", "/usr",
                  "/usr/share", "/usr/lib/x86_64-linux-gnu", "/var", "/var/log", "/run",
                  "/tmp", "/opt", "/srv", "/lib", "/proc/1", "/sys/kernel", "/dev/null",
                  "/home", "/boot", "/mnt", str(tmp_path)]
    checked = 0
    for path in candidates:
        real = Path(path).resolve()
        if not Path(path).exists() or str(real) != path or not (real.is_dir() or real.is_file()):
            continue  # links and special files are refused (or resolved) on other grounds
        for what in ("read", "write"):
            checked += 1
            if refused(path, what):
                with pytest.raises(SandboxError):
                    check_grant(Path(path), what, system=system)
            else:
                assert check_grant(Path(path), what, system=system) == real
    assert checked >= 20
