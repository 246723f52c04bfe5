"""net:// capabilities become the sandbox's network reach, enforced by the Linux kernel:
no capability, no network at all (an empty network namespace); a port capability, that
TCP port and no other (Landlock)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from tests.system.helpers import run_app

from exo.kernel.kernel import Kernel

CLIENT = """
import errno, socket
def attempt(port):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"ping")
        return "ok " + s.recv(16).decode()
    except OSError as exc:
        return "refused " + errno.errorcode.get(exc.errno, str(exc.errno))
    finally:
        s.close()
print(attempt(PORT))
print(attempt(OTHER))
try:
    with open("/proc/self/net/dev") as f:
        print(sorted(line.split(":")[0].strip() for line in f.readlines()[2:]))
except OSError as exc:
    print("interfaces unreadable", errno.errorcode.get(exc.errno))
"""


@pytest.fixture
def echo_server() -> Iterator[tuple[int, int]]:
    """A TCP server on loopback answering 'pong', and a second listening port."""
    srv, other = socket.socket(), socket.socket()
    for s in (srv, other):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(4)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                if conn.recv(16):
                    conn.sendall(b"pong")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], other.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        srv.close()
        other.close()


def _client(port: int, other: int) -> str:
    return CLIENT.replace("OTHER", str(other)).replace("PORT", str(port))


def test_no_net_capability_means_no_network(kernel: Kernel,
                                            echo_server: tuple[int, int]) -> None:
    port, other = echo_server
    status, out, err = run_app(kernel, _client(port, other))
    assert status == 0, err
    # Two layers refuse: Landlock denies every TCP connect (EACCES) and, beneath it,
    # the process has a network namespace of its own with nothing but a loopback.
    assert out.split("\n")[:3] == ["refused EACCES", "refused EACCES", "['lo']"], out


def test_port_capability_opens_that_port_only(kernel: Kernel,
                                              echo_server: tuple[int, int]) -> None:
    port, other = echo_server
    status, out, err = run_app(kernel, _client(port, other),
                               f"net://127.0.0.1:{port}=SEND,RECV")
    assert status == 0, err
    first, second = out.split("\n")[:2]
    assert first == "ok pong"
    assert second == "refused EACCES"  # Landlock's TCP connect rule


def test_any_network_capability(kernel: Kernel, echo_server: tuple[int, int]) -> None:
    port, other = echo_server
    status, out, err = run_app(kernel, _client(port, other), "net://*=SEND,RECV")
    assert status == 0, err
    assert out.split("\n")[0] == "ok pong"
    assert not out.split("\n")[1].startswith("refused EACCES")
