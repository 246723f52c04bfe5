"""Beyond MAX_ZYGOTES the least recently used idle zygote stops; never one a command has
chosen and not yet started in (it would fail, "the session's zygote has ended")."""

from __future__ import annotations

import pytest

from exo.sandbox import zygote


class _Fake:
    def __init__(self, last_used: float, starting: int = 0, pending: int = 0) -> None:
        self.last_used, self.starting = last_used, starting
        self.pending = dict.fromkeys(range(pending))
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_a_zygote_a_command_is_starting_in_is_never_evicted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    oldest_but_starting = _Fake(1.0, starting=1)
    busy = _Fake(2.0, pending=1)
    idle = _Fake(3.0)
    newest = _Fake(4.0)
    table = {("b", "1"): oldest_but_starting, ("b", "2"): busy, ("b", "3"): idle,
             ("b", "4"): newest}
    monkeypatch.setattr(zygote, "_zygotes", table)
    monkeypatch.setattr(zygote, "MAX_ZYGOTES", 2)
    zygote._evict()
    assert [z.stopped for z in (oldest_but_starting, busy, idle, newest)] == \
        [False, False, True, True]
    assert set(table) == {("b", "1"), ("b", "2")}
