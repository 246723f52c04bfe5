"""``_bwrap._under`` (which mount a path lies under, by looking its ancestors up in a set)
answers exactly what comparing the path with every mount point did."""

from __future__ import annotations

import random

from exo.sandbox._bwrap import _under


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
