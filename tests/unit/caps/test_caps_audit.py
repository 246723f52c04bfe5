"""The audit log: records, queries, JSON Lines sink, bounds, thread safety."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from exo.kernel.caps import AuditLog, CapabilityError, CapabilityManager


def test_every_operation_is_recorded(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "var" / "log" / "audit.jsonl")
    m = CapabilityManager(audit=log)
    m.create_space(1)
    m.create_space(2)
    root = m.grant_root(1, "storage://home/demo", "ALL")
    m.request(1, "storage://home/demo/a.txt", "READ")
    d = m.duplicate(1, root, "READ,TRANSFER")
    m.transfer(1, d, 2)
    with pytest.raises(CapabilityError):
        m.check(2, 12345, "WRITE")
    m.revoke(1, root)
    m.destroy_space(1)
    log.close()
    events = [r.event for r in log.query()]
    assert events == ["grant", "grant", "duplicate", "transfer", "deny", "revoke", "release"]
    revoke = log.query(event="revoke")[0]
    assert revoke.count == 2 and revoke.resource == "storage://home/demo" and revoke.pid == 1
    deny = log.query(event="deny")[0]
    assert deny.pid == 2 and "InvalidHandle" in deny.reason and deny.rights == "WRITE"
    # The file holds the same records, one JSON object per line.
    lines = (tmp_path / "var" / "log" / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == events
    assert AuditLog.load(tmp_path / "var" / "log" / "audit.jsonl") == log.query()


def test_query_filters(tmp_path: Path) -> None:
    log = AuditLog()
    log.record("grant", pid=1, resource="storage://home/a", rights="READ")
    t = time.time()
    time.sleep(0.01)
    log.record("grant", pid=2, resource="net://*", rights="SEND")
    log.record("deny", pid=2, resource="storage://etc", reason="nope")
    log.record("transfer", pid=3, peer=1, resource="ipc://x")
    assert [r.seq for r in log.query(pid=1)] == [1, 4]  # as actor or as peer
    assert [r.seq for r in log.query(event="grant")] == [1, 2]
    assert [r.seq for r in log.query(resource_prefix="storage://")] == [1, 3]
    assert [r.seq for r in log.query(since=t)] == [2, 3, 4]
    assert [r.seq for r in log.query(limit=2)] == [3, 4]
    assert log.query(limit=0) == []
    assert [r.seq for r in log.query(event="grant", pid=2, limit=5)] == [2]
    with pytest.raises(ValueError, match="unknown audit event"):
        log.query(event="explode")
    assert log.query()[0].to_dict()["resource"] == "storage://home/a"


def test_ring_is_bounded_and_file_survives_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, capacity=10)
    for i in range(25):
        log.record("grant", pid=i)
    assert len(log) == 10 and log.query()[0].pid == 15
    log.close()
    with open(path, "ab") as f:
        f.write(b'{"seq": 26, "time": 1.0, "ev')  # kernel killed mid-write
    assert len(AuditLog.load(path)) == 25
    assert [r.pid for r in AuditLog.load(path, pid=3)] == [3]


def test_concurrent_writers_keep_every_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)

    def write(pid: int) -> None:
        for _ in range(500):
            log.record("grant", pid=pid, resource="ipc://x")

    threads = [threading.Thread(target=write, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    records = AuditLog.load(path)
    assert len(records) == 2000
    assert sorted(r.seq for r in records) == list(range(1, 2001))
