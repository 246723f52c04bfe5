"""Modules end to end on a real kernel: two versions of a signed module, a client sending
requests the whole time, upgrade with a canary, automatic rollbacks (health, error rate),
explicit rollback, unload — and the refusals that leave the serving version alone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from tests.modules.modlib import build

from exo.kernel.kernel import Kernel
from exo.modules import ModuleError
from exo.modules.manager import ModuleManager, RequestFailed
from exo.pkg import sign
from exo.security import pq, tpm


class Client:
    """Sends requests back to back until stopped; counts answers, errors, losses."""

    def __init__(self, manager: ModuleManager) -> None:
        self.manager = manager
        self.ok = self.errors = self.lost = 0
        self.seen: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            body = str(i).encode()
            try:
                reply = self.manager.request("echo", body)
            except RequestFailed:
                self.errors += 1
                continue
            except Exception:
                self.lost += 1
                continue
            version, _, echoed = reply.partition(b":")
            if echoed != body:
                self.lost += 1
            self.ok += 1
            self.seen.add(version)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def serving(manager: ModuleManager) -> list[tuple[str, int]]:
    (row,) = manager.list()
    return [(v["version"], v["traffic"]) for v in row["versions"]]


def test_load_upgrade_autorollback_rollback_unload(kernel: Kernel, manager: ModuleManager,
                                                    tmp_path: Path) -> None:
    pkgs = {v: build(tmp_path, kernel.root, v, b)
            for v, b in [("1.0", "good"), ("2.0", "good"), ("3.0", "sickens"),
                         ("4.0", "fails")]}
    assert manager.load(str(pkgs["1.0"]))["started"]
    for v in ("2.0", "3.0", "4.0"):  # kept for upgrade, not started
        assert not manager.load(str(pkgs[v]))["started"]
    client = Client(manager)
    try:
        while client.ok < 200:
            threading.Event().wait(0.01)
        served_v1 = int(manager.request("echo", b"count"))
        done = manager.upgrade("echo", "2.0", canary=10, step=45, interval=0.2)
        assert done["rolled_back"] is None and done["to"] == "2.0"
        assert serving(manager) == [("2.0", 100)]
        assert manager.request("echo", b"x") == b"v2.0:x"
        assert int(manager.request("echo", b"count")) >= served_v1  # state handed over

        sick = manager.upgrade("echo", "3.0", canary=20, step=20, interval=0.3)
        assert sick["rolled_back"] and "health check failed" in sick["rolled_back"]
        assert serving(manager) == [("2.0", 100)]

        broken = manager.upgrade("echo", "4.0", canary=20, step=20, interval=0.3)
        assert broken["rolled_back"] and "error rate" in broken["rolled_back"]
        assert serving(manager) == [("2.0", 100)]

        back = manager.rollback("echo")  # by package name; "ipc://echo"'s name works too
        assert (back["from"], back["to"]) == ("2.0", "1.0")
        assert manager.request("echo", b"x") == b"v1.0:x"
        assert manager.list()[0]["versions"][0]["health"] == "ok"
        proc = kernel.proc_files()["modules"]()
        assert proc.startswith("echo 1.0 100% pid ") and " ok requests " in proc
    finally:
        client.stop()
    assert client.ok > 500
    assert (client.lost, client.errors) == (0, 0)
    assert {b"v1.0", b"v2.0", b"v3.0", b"v4.0"} >= client.seen >= {b"v1.0", b"v2.0"}
    manager.unload("echo")
    assert manager.list() == []
    with pytest.raises(ModuleError, match="no such module"):
        manager.request("echo", b"x")
    loads = [e["name"] for e in tpm.read_event_log(kernel.root) if e["kind"] == "module"]
    assert loads[:2] == ["echo 1.0", "echo 2.0"] and "echo 3.0" in loads


def test_refusals_leave_the_serving_version_alone(kernel: Kernel, manager: ModuleManager,
                                                  tmp_path: Path) -> None:
    manager.load(str(build(tmp_path, kernel.root, "1.0")))

    tampered = build(tmp_path / "t", kernel.root, "2.0")
    data = bytearray(tampered.read_bytes())
    data[20] ^= 1  # inside the signed header
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModuleError, match=r"refused: .*signature"):
        manager.load(str(tampered))

    stranger = sign.FileSigner(pq.HybridSigningKey.generate())
    with pytest.raises(ModuleError, match="does not trust"):
        manager.load(str(build(tmp_path / "s", kernel.root, "2.1", signer=stranger)))

    greedy = build(tmp_path / "g", kernel.root, "2.2", caps=("storage://home=READ",))
    with pytest.raises(ModuleError, match="asks for storage://home=READ, more than a module"):
        manager.load(str(greedy))

    manager.load(str(build(tmp_path, kernel.root, "2.3", "crashes")))
    with pytest.raises(ModuleError, match=r"crashed on start .*missing config"):
        manager.upgrade("echo", "2.3")

    with pytest.raises(ModuleError, match="nothing to roll back"):
        manager.rollback("echo")
    assert serving(manager) == [("1.0", 100)]
    assert manager.request("echo", b"still") == b"v1.0:still"
    # the module's own data directory is within what a module may hold
    own = build(tmp_path / "o", kernel.root, "3.0",
                caps=("storage://var/lib/modules/echo=READ,WRITE",))
    manager.load(str(own))
    assert manager.upgrade("echo", "3.0", step=0, interval=0)["to"] == "3.0"


def test_a_module_is_reached_by_its_service_name(kernel: Kernel, manager: ModuleManager,
                                                 tmp_path: Path) -> None:
    # package names cannot hold "/", services can: exo module upgrade net/loop ...
    manager.load(str(build(tmp_path, kernel.root, "1.0", name="net-loop", service="net/loop")))
    assert manager.request("net/loop", b"p") == b"v1.0:p"
    assert manager.list()[0]["service"] == "ipc://net/loop"
    assert manager.unload("net/loop")["name"] == "net-loop"
