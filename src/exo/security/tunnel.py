"""Node tunnels: two Exo nodes talk over WireGuard, configured from their node identities.

There is no WireGuard kernel module here (``CONFIG_WIREGUARD`` off), so the tunnel is
Debian's ``wireguard-go`` (a userspace WireGuard over TUN) configured with
``wireguard-tools``' ``wg``; the addresses and the link come from ``ip``.

* **Node identity** (``var/lib/node/identity.json``, 0600): the node's name, its overlay
  address, a WireGuard key pair (X25519) and a hybrid KEM key pair (X25519 + ML-KEM-768,
  ``pq``). Its public half (``public_identity``: name, address, WireGuard public key, KEM
  public key) is what another node is given, out of band, as for WireGuard itself.
* **Post-quantum pre-shared key.** WireGuard's handshake is X25519 only; its optional
  pre-shared key is mixed into every session key, so a PSK from a post-quantum exchange
  protects recorded traffic against a future quantum adversary (as Rosenpass does). The
  initiating node encapsulates to the peer's hybrid KEM key (``up --offer-out``) and
  hands the ciphertext (an *offer*, public) to the peer, which decapsulates it (``up
  --offer``); both derive PSK = SHA-256("exo-tunnel-psk-v1" · secret · both WireGuard
  public keys, sorted), so an offer is bound to that pair of nodes.
* **The daemon.** ``up`` starts ``wireguard-go`` in the foreground (its own session, so it
  outlives the command), records its pid in ``var/run/tunnel.json``, configures it through
  ``wg set`` (the keys go through pipes, never a file) and brings the interface up;
  ``down`` stops that very process (checked through ``/proc/PID/cmdline``). The UAPI
  socket directory ``/var/run/wireguard`` is the host's, shared by every network
  namespace, so an interface is named after its node (``exo-NAME``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

IDENTITY_VERSION = 1
UAPI_DIR = Path("/var/run/wireguard")
_USERSPACE_ENV = {"WG_PROCESS_FOREGROUND": "1",
                  # wireguard-go refuses to run on kernels it believes have the module
                  "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}


class TunnelError(Exception):
    """A tunnel operation failed; the message is one line meant for the user."""


def _node_dir(root: str | os.PathLike[str]) -> Path:
    return Path(root) / "var" / "lib" / "node"


def _state(root: str | os.PathLike[str]) -> Path:
    return Path(root) / "var" / "run" / "tunnel.json"


def interface_name(name: str) -> str:
    return "exo-" + name[:11]


def _check_name(name: str) -> str:
    if not name or len(name) > 11 or not name.replace("-", "").isalnum():
        raise TunnelError(f"bad node name {name!r} (1 to 11 letters, digits or '-')")
    return name


def _check_address(text: str) -> str:
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise TunnelError(f"bad overlay address {text!r} (e.g. 10.77.0.1/24)") from None
    return str(iface)


# --------------------------------------------------------------------------- identity


def identity(root: str | os.PathLike[str], *, name: str | None = None,
             address: str | None = None) -> dict[str, Any]:
    """This node's identity, created on first use (``name`` and ``address`` needed
    then); returns the private record."""
    from cryptography.hazmat.primitives.asymmetric import x25519

    from exo.security import pq

    path = _node_dir(root) / "identity.json"
    if path.exists():
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except ValueError:
            raise TunnelError(f"{path} is not JSON") from None
        renamed = bool(name) and name != data.get("name")
        moved = bool(address) and _check_address(str(address)) != data.get("address")
        if renamed or moved:
            raise TunnelError(f"this node already is {data.get('name')} "
                              f"({data.get('address')}); its identity is kept")
        return data
    if not name or not address:
        raise TunnelError("no node identity yet: give --name and --address")
    wg = x25519.X25519PrivateKey.generate()
    kem = pq.HybridKemPrivate.generate()
    data = {"version": IDENTITY_VERSION, "name": _check_name(name),
            "address": _check_address(address),
            "wg_private": base64.b64encode(wg.private_bytes_raw()).decode(),
            "kem_private": kem.to_bytes().hex()}
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2))
    return data


def public_identity(private: dict[str, Any]) -> dict[str, Any]:
    """What another node is given: no private key in it."""
    from cryptography.hazmat.primitives.asymmetric import x25519

    from exo.security import pq

    wg = x25519.X25519PrivateKey.from_private_bytes(base64.b64decode(private["wg_private"]))
    kem = pq.HybridKemPrivate.from_bytes(bytes.fromhex(private["kem_private"]))
    return {"version": IDENTITY_VERSION, "name": private["name"],
            "address": private["address"],
            "wg_public": base64.b64encode(wg.public_key().public_bytes_raw()).decode(),
            "kem_public": kem.public_key().to_bytes().hex()}


def check_peer(doc: Any) -> dict[str, Any]:
    """A peer's public identity, checked field by field (it comes from elsewhere)."""
    from exo.security import pq

    if not isinstance(doc, dict) or doc.get("version") != IDENTITY_VERSION:
        raise TunnelError("the peer file is not a version-1 node identity")
    try:
        _check_name(str(doc["name"]))
        _check_address(str(doc["address"]))
        if len(base64.b64decode(str(doc["wg_public"]), validate=True)) != 32:
            raise ValueError("the WireGuard public key is not 32 bytes")
        pq.HybridKemPublic.from_bytes(bytes.fromhex(str(doc["kem_public"])))
    except (KeyError, ValueError, TypeError) as exc:
        raise TunnelError(f"malformed peer identity: {exc}") from None
    if "wg_private" in doc or "kem_private" in doc:
        raise TunnelError("the peer file holds private keys: give the peer's public "
                          "identity (exo tunnel identity)")
    return doc


def _psk(secret: bytes, mine: dict[str, Any], peer: dict[str, Any]) -> bytes:
    a, b = sorted((str(mine["wg_public"]), str(peer["wg_public"])))
    return hashlib.sha256(b"exo-tunnel-psk-v1\0" + secret + a.encode() + b.encode()).digest()


def make_offer(private: dict[str, Any], peer: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Encapsulate a fresh secret to ``peer``'s hybrid KEM key: (the offer to hand it,
    the PSK)."""
    from exo.security import pq

    secret, ct = pq.HybridKemPublic.from_bytes(bytes.fromhex(peer["kem_public"])).encapsulate()
    mine = public_identity(private)
    return ({"version": 1, "from": mine["name"], "to": peer["name"], "ciphertext": ct.hex()},
            _psk(secret, mine, peer))


def accept_offer(private: dict[str, Any], peer: dict[str, Any], offer: Any) -> bytes:
    """The PSK from ``peer``'s offer to this node."""
    from exo.security import pq

    if not isinstance(offer, dict) or offer.get("to") != private["name"] or \
            offer.get("from") != peer["name"]:
        raise TunnelError(f"the offer is not from {peer['name']} to {private['name']}")
    try:
        kem = pq.HybridKemPrivate.from_bytes(bytes.fromhex(private["kem_private"]))
        secret = kem.decapsulate(bytes.fromhex(str(offer["ciphertext"])))
    except (KeyError, ValueError, TypeError) as exc:
        raise TunnelError(f"malformed offer: {exc}") from None
    return _psk(secret, public_identity(private), peer)


# --------------------------------------------------------------------------- up/down


def _tools() -> None:
    for tool, package in (("wireguard-go", "wireguard-go"), ("wg", "wireguard-tools"),
                          ("ip", "iproute2")):
        if shutil.which(tool) is None:
            raise TunnelError(f"{tool} is not installed (Debian package {package})")
    if not os.path.exists("/dev/net/tun"):
        raise TunnelError("/dev/net/tun is missing: wireguard-go needs a TUN device")


def _run(cmd: list[str], **kwargs: Any) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, **kwargs)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise TunnelError(f"{cmd[0]} {cmd[1]} failed: {why}")


def up(root: str | os.PathLike[str], peer_doc: Any, *, endpoint: str, listen_port: int,
       psk: bytes) -> dict[str, Any]:
    """Start this node's tunnel to ``peer_doc`` (in the current network namespace)."""
    _tools()
    private = identity(root)
    peer = check_peer(peer_doc)
    if status(root) is not None:
        raise TunnelError("a tunnel of this node is already up (exo tunnel down first)")
    if not 1 <= listen_port <= 65535:
        raise TunnelError("--listen-port must be 1 to 65535")
    iface = interface_name(private["name"])
    from exo.kernel.beneath import open_log

    # beneath the tree, no link followed: an app granted var/log may have planted one
    out = open_log(root, f"var/log/tunnel-{iface}.log")
    try:
        proc = subprocess.Popen(["wireguard-go", iface], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **_USERSPACE_ENV})
    finally:
        os.close(out)
    state = {"pid": proc.pid, "interface": iface, "peer": peer["name"],
             "address": private["address"], "peer_address": peer["address"],
             "endpoint": endpoint, "listen_port": listen_port, "started": time.time()}
    path = _state(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))
    try:
        _wait_for(UAPI_DIR / f"{iface}.sock", proc)
        peer_ip = ipaddress.ip_interface(peer["address"]).ip
        _wg_set(iface, base64.b64decode(private["wg_private"]), psk, listen_port, peer,
                endpoint, f"{peer_ip}/{peer_ip.max_prefixlen}")
        _run(["ip", "address", "add", private["address"], "dev", iface])
        _run(["ip", "link", "set", iface, "up"])
    except BaseException:
        down(root)
        raise
    return state


def _wait_for(sock: Path, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not sock.exists():
        if proc.poll() is not None:
            raise TunnelError(f"wireguard-go exited with status {proc.returncode} (see "
                              "var/log/tunnel-*.log)")
        if time.monotonic() > deadline:
            raise TunnelError("wireguard-go did not open its control socket")
        time.sleep(0.02)


def _wg_set(iface: str, private_key: bytes, psk: bytes, port: int, peer: dict[str, Any],
            endpoint: str, allowed: str) -> None:
    """``wg set`` with both secrets passed through pipes (``/dev/fd/N``), never a file."""
    pipes = []
    try:
        for secret in (private_key, psk):
            r, w = os.pipe()
            os.write(w, base64.b64encode(secret) + b"\n")
            os.close(w)
            pipes.append(r)
        _run(["wg", "set", iface, "private-key", f"/dev/fd/{pipes[0]}", "listen-port",
              str(port), "peer", str(peer["wg_public"]), "preshared-key",
              f"/dev/fd/{pipes[1]}", "endpoint", endpoint, "allowed-ips", allowed,
              "persistent-keepalive", "5"], pass_fds=tuple(pipes))
    finally:
        for fd in pipes:
            os.close(fd)


def status(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The running tunnel of this node (with ``wg``'s view of the peer), or None."""
    try:
        state: dict[str, Any] = json.loads(_state(root).read_text())
    except (OSError, ValueError):
        return None
    if not _is_ours(int(state.get("pid", 0)), str(state.get("interface"))):
        return None
    r = subprocess.run(["wg", "show", state["interface"], "dump"], capture_output=True,
                       text=True, timeout=10)
    lines = r.stdout.strip().splitlines() if r.returncode == 0 else []
    if len(lines) >= 2:
        fields = lines[1].split("\t")
        state["latest_handshake"] = int(fields[4]) if fields[4].isdigit() else 0
        state["rx_bytes"], state["tx_bytes"] = int(fields[5]), int(fields[6])
    return state


def _is_ours(pid: int, iface: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return len(cmdline) >= 2 and cmdline[0].endswith(b"wireguard-go") and \
        cmdline[1] == iface.encode()


def down(root: str | os.PathLike[str], timeout: float = 5.0) -> bool:
    """Stop this node's wireguard-go (its interface goes with it); False when none ran."""
    try:
        state = json.loads(_state(root).read_text())
    except (OSError, ValueError):
        return False
    pid, iface = int(state.get("pid", 0)), str(state.get("interface"))
    stopped = False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _is_ours(pid, iface):
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        stopped = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _is_ours(pid, iface):
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.02)
    _state(root).unlink(missing_ok=True)
    (UAPI_DIR / f"{iface}.sock").unlink(missing_ok=True)
    return stopped
