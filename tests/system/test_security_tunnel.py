"""Node tunnels: two Exo nodes in their own network namespaces, joined by a veth pair the
test makes, talk over WireGuard (wireguard-go) configured by `exo tunnel` from their node
identities, with a pre-shared key from an X25519 + ML-KEM-768 offer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EXO = [sys.executable, "-m", "exo"]
NEEDS = ("ip", "wireguard-go", "wg")


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two network namespaces joined by a veth pair: 192.168.77.1 and .2."""
    if os.geteuid() != 0 or any(shutil.which(t) is None for t in NEEDS) or \
            not os.path.exists("/dev/net/tun"):
        pytest.skip("needs root, /dev/net/tun, iproute2, wireguard-go and wireguard-tools")
    tag = os.urandom(3).hex()
    a, b = f"exo-t{tag}a", f"exo-t{tag}b"
    _sh("ip", "netns", "add", a)
    try:
        _sh("ip", "netns", "add", b)
        _sh("ip", "link", "add", f"v{tag}a", "type", "veth", "peer", "name", f"v{tag}b")
        for ns, dev, ip in ((a, f"v{tag}a", "192.168.77.1/24"), (b, f"v{tag}b", "192.168.77.2/24")):
            _sh("ip", "link", "set", dev, "netns", ns)
            _sh("ip", "-n", ns, "address", "add", ip, "dev", dev)
            _sh("ip", "-n", ns, "link", "set", dev, "up")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        for ns in (a, b):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                  text=True).stdout.split()
            assert pids == [], f"processes left in {ns}: {pids}"
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _exo(ns: str, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EXO_ROOT=str(root))
    return subprocess.run(["ip", "netns", "exec", ns, *EXO, *args], capture_output=True,
                          text=True, timeout=60, env=env)


ECHO_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.2", 7000)); s.listen(); s.settimeout(60)
print("ready", flush=True)
c, _ = s.accept(); c.sendall(b"pong:" + c.recv(64))
"""
CLIENT = """
import socket, sys
try:  # a handshake lost under load is retried by WireGuard after 5 s
    s = socket.create_connection(("10.77.0.2", 7000), timeout=float(sys.argv[1]))
    s.sendall(b"over the tunnel"); print(s.recv(64))
except OSError as exc:
    print("no route:", type(exc).__name__)
"""


def _echo(a: str, b: str, timeout: float = 30.0) -> str:
    server = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", ECHO_SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        out = subprocess.run(["ip", "netns", "exec", a, sys.executable, "-c", CLIENT,
                              str(timeout)], capture_output=True, text=True,
                             timeout=timeout + 30).stdout.strip()
    finally:
        server.kill()
        server.wait()
    return out


def test_two_nodes_talk_over_wireguard_from_their_identities(netns: tuple[str, str],
                                                            tmp_path: Path) -> None:
    a, b = netns
    ra, rb = tmp_path / "a", tmp_path / "b"
    for ns, root, name, addr in ((a, ra, "node-a", "10.77.0.1/24"),
                                 (b, rb, "node-b", "10.77.0.2/24")):
        r = _exo(ns, root, "tunnel", "identity", "--name", name, "--address", addr,
                 "--out", str(tmp_path / f"{name}.json"))
        assert r.returncode == 0, r.stderr
    public = json.loads((tmp_path / "node-a.json").read_text())
    assert "wg_private" not in public and "kem_private" not in public
    offer = tmp_path / "offer.json"
    try:
        up_a = _exo(a, ra, "tunnel", "up", str(tmp_path / "node-b.json"), "--endpoint",
                    "192.168.77.2:51820", "--offer-out", str(offer))
        assert up_a.returncode == 0, up_a.stderr
        up_b = _exo(b, rb, "tunnel", "up", str(tmp_path / "node-a.json"), "--endpoint",
                    "192.168.77.1:51820", "--offer", str(offer))
        assert up_b.returncode == 0, up_b.stderr
        assert _echo(a, b) == repr(b"pong:over the tunnel")
        st = json.loads(_exo(a, ra, "tunnel", "status", "--json").stdout)
        assert st["peer"] == "node-b" and st["latest_handshake"] > 0 and st["rx_bytes"] > 0
        # B answering with a pre-shared key of its own (another offer): no handshake
        assert _exo(b, rb, "tunnel", "down").returncode == 0
        other = tmp_path / "other.json"
        forged = json.loads(offer.read_text())
        from exo.security import pq

        kem = pq.HybridKemPublic.from_bytes(bytes.fromhex(
            json.loads((tmp_path / "node-b.json").read_text())["kem_public"]))
        forged["ciphertext"] = kem.encapsulate()[1].hex()
        other.write_text(json.dumps(forged))
        up_b = _exo(b, rb, "tunnel", "up", str(tmp_path / "node-a.json"), "--endpoint",
                    "192.168.77.1:51820", "--offer", str(other))
        assert up_b.returncode == 0, up_b.stderr
        assert _echo(a, b, timeout=12).startswith("no route:")
    finally:
        for ns, root in ((a, ra), (b, rb)):
            _exo(ns, root, "tunnel", "down")


def test_bad_peer_files_are_one_line_errors(tmp_path: Path) -> None:
    env = dict(os.environ, EXO_ROOT=str(tmp_path / "r"))
    subprocess.run([*EXO, "tunnel", "identity", "--name", "n1", "--address",
                    "10.77.0.1/24"], env=env, check=True, capture_output=True, timeout=60)
    bad = tmp_path / "bad.json"
    for doc in ({"version": 1, "name": "x"}, [1, 2], {"version": 1, "name": "p",
                "address": "10.0.0.2/24", "wg_public": "AAAA", "kem_public": "00"}):
        bad.write_text(json.dumps(doc))
        r = subprocess.run([*EXO, "tunnel", "up", str(bad), "--endpoint", "127.0.0.1:1",
                            "--offer-out", str(tmp_path / "o.json")], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
        assert "peer" in r.stderr or "identity" in r.stderr
