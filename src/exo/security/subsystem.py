"""DEFERRED boot step "Security": measured boot.

Hashes the kernel's sources, each subsystem that started (its module's source) and this
package, writes the event log and, when a TPM is reachable (a hardware TPM, or the swtpm
``exo tpm start`` runs for this tree), resets PCR 23 and extends each digest into it.
Without a TPM the log is still written and the step says ``SKIP`` with the reason: the
system never pretends a TPM is there. It runs after the prompt and stays off the boot
path's imports: no tpm2-pytss here, the few TPM commands are spoken directly (``tpm``).
"""

from __future__ import annotations

import contextlib
import os
import sys

from exo.kernel.bootlog import SkipStep, Status
from exo.kernel.subsystem import Subsystem
from exo.security import tpm

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.kernel.core import KernelCore
    from exo.kernel.subsystems.caps import Capabilities
    from exo.security.auditchain import Anchors


def components(core: KernelCore) -> list[tuple[str, str, bytes]]:
    """What is measured, in a fixed order: the kernel's source tree, then each subsystem
    that started (boot-table order, the source of its module), then the security package.
    The same code started the same way gives the same list, hence the same PCR."""
    from exo.kernel.boottable import BOOT_TABLE

    cache = tpm.DigestCache(tpm.Paths(core.root).digests)
    started = {s.name for s in core.report.steps if s.status is Status.OK}
    kernel_dir = os.path.dirname(sys.modules["exo.kernel"].__file__ or "")
    found: list[tuple[str, str, bytes]] = [("kernel", "kernel", tpm.tree_digest(kernel_dir, cache))]
    for row in BOOT_TABLE:
        if row.name in started and isinstance(row.target, str) and row.key != "security":
            module = sys.modules.get(row.target.partition(":")[0])
            if module is not None and module.__file__:
                found.append(("subsystem", row.name, tpm.module_digest(module.__file__, cache)))
    security_dir = os.path.dirname(__file__)
    found.append(("subsystem", "Security", tpm.tree_digest(security_dir, cache)))
    with contextlib.suppress(OSError):  # a read-only tree: hashed in full next boot
        cache.save()
    return found


class Security(Subsystem):
    __slots__ = ("anchors", "caps", "core", "location", "pcr_value")

    def __init__(self, core: KernelCore, *, caps: Capabilities) -> None:
        self.core = core
        self.caps = caps
        self.location: tpm.Location | None = None
        self.pcr_value = b""
        self.anchors: Anchors | None = None

    def start(self) -> str:
        from exo.security import areaserve

        areaserve.install()  # files of areas created from now on are served encrypted
        if os.environ.get(tpm.ENV_SWITCH, "").lower() == "off":
            raise SkipStep("measuring disabled (EXO_TPM=off): nothing hashed or logged")
        self.location = tpm.locate(self.core.root)
        audit = self.caps.audit
        anchoring = audit is not None and audit.path is not None
        also: tuple[int, ...] = ()
        if anchoring:  # PCR 16 is reset on the same connection (one fewer per boot)
            from exo.security.auditchain import ANCHOR_PCR

            also = (ANCHOR_PCR,)
        count, self.pcr_value = tpm.measure(self.core.root, components(self.core),
                                            self.location, boot_id=self.core.boot_id,
                                            also_reset=also)
        log = "/var/log/measurements.jsonl"
        if self.location is None:
            raise SkipStep("no TPM: /dev/tpmrm0 absent and swtpm not running (exo tpm "
                           f"start); {count} components hashed into {log}, not measured")
        detail = (f"{self.location.describe()}: {count} components measured into "
                  f"PCR {tpm.PCR} = {self.pcr_value.hex()[:16]}…, event log {log}")
        if audit is not None and anchoring:
            from exo.security.auditchain import ANCHOR_PCR, ANCHORS, Anchors

            interval = float(os.environ.get("EXO_AUDIT_ANCHOR_S", "60"))
            try:
                self.anchors = Anchors(self.core.root, self.location, audit.chain_head,
                                       interval=interval, boot_id=self.core.boot_id,
                                       reset=False)
            except OSError as exc:  # a link planted at its log, say: never followed
                detail += f"; audit head NOT anchored (/{ANCHORS}: {exc.strerror or exc})"
            else:
                detail += f"; audit head anchored in PCR {ANCHOR_PCR} every {interval:g} s"
        return detail

    def stop(self) -> None:
        if self.anchors is not None:
            self.anchors.stop()
            self.anchors = None

    def proc_files(self) -> dict[str, Callable[[], str]]:
        return {"measurements": self._measurements}

    def _measurements(self) -> str:
        return "".join(f"{ev['seq']:3} PCR{ev['pcr']} {ev['digest'][:16]}… {ev['name']}\n"
                       for ev in tpm.read_event_log(self.core.root))
