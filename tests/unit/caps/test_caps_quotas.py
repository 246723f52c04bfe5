"""Bounds a hostile process cannot push the capability engine past: audit volume (record
size, rotation, rate limit), handles received from others, tokens bound to a receiver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exo.kernel.caps import (
    AuditLog,
    CapabilityDenied,
    CapabilityManager,
    InvalidResourceName,
    QuotaExceeded,
    SpaceFull,
)
from exo.kernel.caps.audit import MAX_FIELD_BYTES, bound_text
from exo.kernel.caps.ratelimit import TokenBuckets
from exo.kernel.inflight import InFlight


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ token bucket
def test_token_bucket_allows_a_burst_then_the_rate_and_counts_what_it_suppressed() -> None:
    clock = Clock()
    tb = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [tb.allow(7) for _ in range(3)] == [(True, 0)] * 3
    assert [tb.allow(7)[0] for _ in range(5)] == [False] * 5
    assert tb.allow(8) == (True, 0)  # buckets are per key
    clock.now += 0.5  # one token back at 2/s
    assert tb.allow(7) == (True, 5)  # allowed, and told how many were dropped before
    assert tb.allow(7) == (False, 0)
    clock.now += 100  # refills up to the burst, never beyond
    assert [tb.allow(7)[0] for _ in range(4)] == [True, True, True, False]
    assert tb.forget(7) == 1 and tb.forget(7) == 0


def test_token_bucket_table_is_bounded() -> None:
    clock = Clock()
    tb = TokenBuckets(rate=1.0, burst=1, max_keys=10, clock=clock)
    for key in range(1000):
        tb.allow(key)
    assert len(tb) <= 10


# ------------------------------------------------------------------ audit records
def test_long_text_is_cut_and_marked() -> None:
    text, cut = bound_text("é" * 1000)
    assert cut and text.endswith("...[truncated 2000 bytes]")
    assert len(text.encode()) <= MAX_FIELD_BYTES + 40
    assert bound_text("storage://home/a") == ("storage://home/a", False)


def test_a_denial_with_a_huge_name_is_one_bounded_record(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    m = CapabilityManager(audit=log)
    m.create_space(5)
    with pytest.raises(InvalidResourceName, match="longer than 4096 bytes"):
        m.request(5, "storage://" + "x" * 60_000, "READ")
    # 4096 characters but more than 4096 bytes: refused too.
    with pytest.raises(InvalidResourceName, match="longer than 4096 bytes"):
        m.request(5, "storage://" + "é" * 3000, "READ")
    log.close()
    lines = (tmp_path / "audit.jsonl").read_bytes().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert len(line) < 1024 + 75  # + the hash chain's link: ,"prev":"<64 hex digits>"
        assert json.loads(line)["truncated"] is True
    assert log.query(event="deny")[0].resource.startswith("storage://xxx")


def test_denials_are_rate_limited_per_process_with_a_summary(tmp_path: Path) -> None:
    clock = Clock()
    log = AuditLog(tmp_path / "audit.jsonl", deny_rate=1.0, deny_burst=5, clock=clock)
    m = CapabilityManager(audit=log)
    m.create_space(5)
    m.create_space(6)
    for _ in range(1000):
        with pytest.raises(CapabilityDenied):
            m.request(5, "storage://etc", "READ")
    with pytest.raises(CapabilityDenied):
        m.request(6, "storage://etc", "READ")  # another process is not silenced by 5
    denials = log.query(event="deny")
    assert [r.pid for r in denials] == [5] * 5 + [6]
    assert log.suppressed == 995
    clock.now += 1.0
    with pytest.raises(CapabilityDenied):
        m.request(5, "storage://etc", "READ")
    summary, last = log.query(event="deny", pid=5)[-2:]
    assert summary.count == 995 and "995 denials of process 5 suppressed" in summary.reason
    assert "CapabilityDenied" in last.reason
    for _ in range(3):
        with pytest.raises(CapabilityDenied):
            m.request(5, "storage://etc", "READ")
    m.destroy_space(5)  # exit: what was still suppressed is summarised
    assert log.query(event="deny", pid=5)[-1].count == 3
    # Grants, transfers and revocations are never rate-limited.
    assert log.query(event="release", pid=5)


def test_the_file_rotates_by_size_and_keeps_a_bounded_number(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=4096, keep=2)
    for i in range(500):
        log.record("grant", pid=i, resource=f"storage://home/{i}", rights="READ")
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["audit-deny.jsonl", "audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    # Nothing torn, newest last; the oldest records were dropped with the oldest file.
    seqs = [r.seq for p in log.files() for r in AuditLog.load(p)]
    assert seqs == sorted(seqs) and seqs[-1] == 500 and seqs[0] > 1
    # Reopening appends to the current file and keeps rotating.
    log2 = AuditLog(path, max_bytes=4096, keep=2)
    log2.record("grant", pid=1)
    log2.close()
    assert len(list(tmp_path.iterdir())) == 4


def test_a_flood_of_cheap_records_cannot_push_a_denial_out_of_the_log(tmp_path: Path) -> None:
    """Review finding: an app made one denied request, then flooded grant/release records
    until every rotated file had turned over and its denial was gone."""
    now = [0.0]
    log = AuditLog(tmp_path / "audit.jsonl", capacity=64, max_bytes=4096, keep=2,
                   clock=lambda: now[0])
    log.record("deny", pid=5, resource="storage://home/b/secret", reason="request: denied")
    for i in range(20_000):
        now[0] += 0.0001  # 2 s of flooding at 10,000 records per second
        log.record("grant" if i % 2 else "release", pid=5, resource="storage://home/a/x")
    log.close()
    # the flood was cut to the per-process rate, and said so
    assert log.suppressed > 15_000
    assert any(r.event == "suppressed" for r in log.query(event="suppressed"))
    # the denial is still in memory and in its own file
    assert [r.resource for r in log.query(event="deny")] == ["storage://home/b/secret"]
    denials = [r for p in log.deny_files() for r in AuditLog.load(p)]
    assert [r.resource for r in denials] == ["storage://home/b/secret"]


# ------------------------------------------------------------------ quotas in the engine
def test_handles_received_from_others_are_bounded_separately() -> None:
    m = CapabilityManager()
    m.create_space(1)
    m.create_space(2, max_handles=50, max_received=3)
    root = m.grant_root(1, "storage://home/a", "ALL")
    for _ in range(3):
        m.transfer(1, m.duplicate(1, root, "READ,TRANSFER"), 2)
    d = m.duplicate(1, root, "READ,TRANSFER")
    with pytest.raises(QuotaExceeded, match=r"quota 'received' \(3\) reached"):
        m.transfer(1, d, 2)
    m.check(1, d)  # refused before it left: the sender still holds it
    assert m.received(2) == (3, 3)
    # Its own handles are not "received": the table's own bound applies to them.
    m.grant_root(2, "storage://home/b", "ALL")
    # Closing a received handle makes room again; refusing all stops every transfer.
    m.close(2, m.handles(2)[0].handle)
    m.transfer(1, d, 2)
    m.set_max_received(2, 0)
    with pytest.raises(QuotaExceeded):
        m.transfer(1, m.duplicate(1, root, "READ,TRANSFER"), 2)


def test_the_handle_table_bound_is_a_quota_error() -> None:
    m = CapabilityManager()
    m.create_space(1, max_handles=2)
    m.grant_root(1, "storage://a", "ALL")
    m.grant_root(1, "storage://b", "ALL")
    with pytest.raises(SpaceFull) as info:
        m.grant_root(1, "storage://c", "ALL")
    assert isinstance(info.value, QuotaExceeded)
    assert info.value.quota == "handles" and info.value.limit == 2
    assert "quota 'handles' (2) reached" in str(info.value)


def test_tokens_are_bound_to_their_receiver() -> None:
    m = CapabilityManager()
    for pid in (1, 2, 3):
        m.create_space(pid)
    root = m.grant_root(1, "storage://home/a", "ALL")
    flight = InFlight(m)
    token = flight.put(1, m.duplicate(1, root, "READ,TRANSFER"), 2)
    with pytest.raises(CapabilityDenied, match="issued to process 2, not 3"):
        flight.take(token, 3)
    assert m.handles(3) == [] and flight.count() == 1  # still valid for its receiver
    handle = flight.take(token, 2)
    assert m.check(2, handle).resource.path == "home/a"
    with pytest.raises(LookupError):
        flight.take(token, 2)  # one use
    assert "issued to process 2" in m.audit.query(event="deny")[-1].reason


def test_in_flight_is_a_per_sender_quota_and_full_receivers_keep_the_token() -> None:
    m = CapabilityManager()
    m.create_space(1)
    m.create_space(2, max_received=0)
    root = m.grant_root(1, "storage://home/a", "ALL")
    flight = InFlight(m)
    tokens = [flight.put(1, m.duplicate(1, root, "READ,TRANSFER"), 2, limit=2)
              for _ in range(2)]
    extra = m.duplicate(1, root, "READ,TRANSFER")
    with pytest.raises(QuotaExceeded, match=r"quota 'in_flight' \(2\)"):
        flight.put(1, extra, 2, limit=2)
    m.check(1, extra)  # not taken out
    with pytest.raises(QuotaExceeded, match="'received'"):
        flight.take(tokens[0], 2)
    assert m.audit.query(event="deny")[-1].pid == 2  # the receiver's rate limit applies
    m.set_max_received(2, 5)
    flight.take(tokens[0], 2)
    assert flight.count(sender=1) == 1
    assert flight.drop_receiver(2) == 1 and flight.count() == 0


def test_kernel_objects_pinned_for_a_process_are_bounded() -> None:
    m = CapabilityManager()
    m.create_space(1, max_pins=2)
    root = m.grant_root(1, "storage://home/a", "ALL")
    pins = [m.pin(1, root, "READ") for _ in range(2)]
    with pytest.raises(QuotaExceeded, match=r"quota 'files' \(2\) reached: process 1 "
                                            r"\(with its descendants\) holds 2"):
        m.pin(1, root, "READ")
    m.unpin(pins[0])  # a file closed: room for another
    pins[0] = m.pin(1, root, "READ")
    # Revoked pins stop counting even before the file server hands them back.
    m.revoke(1, root)
    m.pin(1, m.grant_root(1, "storage://home/b", "ALL"), "READ")
    for pin in pins:
        m.unpin(pin)


def test_a_childs_handles_and_pins_count_against_its_parent() -> None:
    m = CapabilityManager()
    m.create_space(1, max_handles=10, max_pins=3)
    m.create_space(2, max_handles=10, max_pins=3, parent=1)
    m.create_space(3, max_handles=10, parent=2)  # a grandchild
    root = m.grant_root(1, "storage://home/a", "ALL")
    for _ in range(5):
        m.delegate(1, root, 2, "READ,DUPLICATE,TRANSFER")
    for _ in range(3):
        m.delegate(1, root, 3, "READ")
    # 1 + 5 + 3 = 9 of the parent's 10: one left, for the parent and its subtree alike.
    m.grant_root(3, "storage://home/b", "READ")
    for pid in (1, 2, 3):
        with pytest.raises(SpaceFull, match="quota 'handles' \\(10\\) reached: process 1 \\(with "
                                            "its descendants\\) holds 10 handles"):
            m.grant_root(pid, "storage://home/c", "READ")
    # The grandchild exits: its 4 come back to every ancestor.
    m.destroy_space(3)
    for _ in range(4):
        m.grant_root(1, "storage://home/c", "READ")
    # Pins (open files) likewise; a pin outliving its process stays charged until unpinned.
    child_root = m.handles(2)[0].handle
    pins = [m.pin(2, child_root, "READ") for _ in range(3)]
    with pytest.raises(QuotaExceeded, match="process 1 \\(with its descendants\\) holds 3 files"):
        m.pin(1, root, "READ")
    m.destroy_space(2)
    with pytest.raises(QuotaExceeded, match="'files'"):
        m.pin(1, root, "READ")
    m.unpin(pins[0])
    m.pin(1, root, "READ")
