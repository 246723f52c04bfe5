"""``exo.kernel.channel_service``: how the module manager and AI-Core start a sandboxed
service. A service whose first frame is not READY (garbage, too short, another kind) or
that dies first is killed and reported in one line; a spawn that fails leaves nothing."""

from __future__ import annotations

import pytest
from tests.system.helpers import APP_PYTHON

from exo.kernel.channel_service import ServiceStartError, start_channel_service
from exo.kernel.kernel import Kernel
from exo.kernel.manifest import manifest_from_dict
from exo.kernel.process import ExoProcess
from exo.modules import wire
from exo_std.ipc import Endpoint

SERVICE = """
import sys, time
from exo_std.ipc import inherited
(ep,) = inherited()
ep.peer = 1
print("about to say", sys.argv[1], flush=True)
ep.send(bytes.fromhex(sys.argv[1]))
time.sleep(60)
"""


def _start(kernel: Kernel, log: str, first_frame: bytes) -> tuple[ExoProcess, Endpoint]:
    manifest = manifest_from_dict({}, "test://service")
    return start_channel_service(
        kernel.api, [APP_PYTHON, "-c", SERVICE, first_frame.hex()], [], manifest=manifest,
        log=log, append_log=False, ready_kind=lambda frame: wire.parse(frame)[0],
        ready=wire.READY, timeout=15)


def _running(kernel: Kernel) -> list[int]:
    return [p["pid"] for p in kernel.api.ps() if p.get("pid") != 1]


def test_a_service_that_says_ready_is_handed_over(kernel: Kernel) -> None:
    proc, end = _start(kernel, "var/log/test/ok.log", wire.frame(wire.READY, 0))
    try:
        assert end.peer == proc.pid
    finally:
        kernel.api.interrupt(proc, grace=0)
        kernel.api.wait(proc)
        end.close()


@pytest.mark.parametrize("first", [b"", b"\x0a", wire.frame(wire.OK, 7, b"hello"),
                                   b"\xff" * 64])
def test_a_first_frame_that_is_not_ready_kills_the_service(kernel: Kernel,
                                                           first: bytes) -> None:
    before = _running(kernel)
    with pytest.raises(ServiceStartError) as caught:
        _start(kernel, "var/log/test/bad.log", first)
    assert caught.value.started
    assert str(caught.value) == f"about to say {first.hex()}".strip()  # its log's last line
    assert _running(kernel) == before


def test_a_spawn_that_fails_says_why_and_leaves_nothing(kernel: Kernel) -> None:
    before = _running(kernel)
    with pytest.raises(ServiceStartError) as caught:
        start_channel_service(
            kernel.api, ["/no/such/program"], [], manifest=manifest_from_dict({}, "test://x"),
            log="var/log/test/x.log", append_log=True, ready_kind=lambda f: 0, ready=10,
            timeout=5)
    assert not caught.value.started and str(caught.value)
    assert _running(kernel) == before
