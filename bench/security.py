"""Benchmark: the security core's costs, all from one run (writes bench/results/security.json).

Claims under test (issue 12): measuring adds < 20 ms to boot; encrypted storage reads and
writes at ≥ 50 % of plain files' throughput; and the price of post-quantum hybrids.

* ``boot_ms``: wall time of ``exo boot --json-boot`` (which returns once the DEFERRED
  phase, where the Security step measures, is done), median of interleaved runs with a
  swtpm running for the tree: ``measured`` (the Security step hashes and extends PCR 23)
  against ``unmeasured`` (``EXO_TPM=off``: the step skips at once, nothing hashed, logged
  or sent to the TPM). The difference is what measuring costs a boot.
  ``boot_security_step_ms``: the Security step's own row (``ms``) in the same boots.
* ``storage_mb_per_s``: a file written then read back through the same chunked loop
  (1 MiB chunks, fsync after writing, then renamed over the old copy: both cases replace
  files atomically, as encrypted areas do), ``encrypted`` by ``exo.security.sealedfile``
  (XChaCha20-Poly1305) against ``plain`` copies; total bytes moved (write + read) over
  total time, median of runs, file in the page cache on the same filesystem;
  ``storage_encrypted_over_plain``: the median of each run's encrypted / plain ratio
  (the two cases alternate order; the disk's writeback makes single cases swing 2-3x).
  ``storage_memory_*``: the same passes between memfds (no disk, no page-cache
  writeback): the cipher's own cost, what the area server pays to decrypt a file.
* ``sign_us`` / ``verify_us``: one signature of a 1 KiB message (median µs):
  Ed25519, ML-DSA-65, and the hybrid (both, ``exo.security.pq``).
* ``kem_us``: one shared secret established: encapsulate + decapsulate (for X25519: an
  ephemeral key pair and both exchanges) for X25519, ML-KEM-768 and the hybrid.

Run: ``.venv/bin/python bench/security.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "security.json"
EXO = str(Path(sys.executable).with_name("exo"))


def _median_us(fn: Callable[[], object], n: int) -> float:
    fn()  # warm up
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000)
    return round(statistics.median(samples), 1)


def bench_boot(runs: int) -> tuple[dict[str, float], dict[str, float]]:
    from exo.security import tpm

    with tempfile.TemporaryDirectory(prefix="exo-bench-sec-") as tmp:
        root = Path(tmp) / "root"
        tpm.start_swtpm(root)
        try:
            samples: dict[str, list[float]] = {"measured": [], "unmeasured": []}
            step_ms: dict[str, list[float]] = {"measured": [], "unmeasured": []}
            for i in range(runs * 2 + 2):
                case = "measured" if i % 2 == 0 else "unmeasured"
                env = dict(os.environ, EXO_ROOT=str(root))
                env.pop(tpm.ENV_SWITCH, None)
                if case == "unmeasured":
                    env[tpm.ENV_SWITCH] = "off"
                t0 = time.perf_counter()
                r = subprocess.run([EXO, "boot", "--json-boot"], env=env, capture_output=True,
                                   text=True, timeout=120)
                ms = (time.perf_counter() - t0) * 1000
                if r.returncode != 0:
                    raise SystemExit(f"boot failed: {r.stderr.strip()[-300:]}")
                step = {s["name"]: s for s in json.loads(r.stdout)["steps"]}["Security"]
                want = "OK" if case == "measured" else "SKIP"
                if step["status"] != want:
                    raise SystemExit(f"{case} boot: Security {step['status']}: {step['detail']}")
                if i >= 2:  # the first pair warms the page cache (and the digest cache)
                    samples[case].append(ms)
                    step_ms[case].append(float(step["ms"]))
        finally:
            tpm.stop_swtpm(root)
    return ({k: round(statistics.median(v), 1) for k, v in samples.items()},
            {k: round(statistics.median(v), 2) for k, v in step_ms.items()})


def _copy(src: str, dst: str) -> None:
    """The plain peer does what ``sealedfile`` does around its cipher: 1 MiB chunks into
    a temporary file, with the same write-behind (``sealedfile.fd_writer``: the disk's
    writeback started every 8 MiB, so the ratio measures the cipher, not I/O scheduling),
    fsync, rename over ``dst`` (an atomic replace: unlinking the old file costs the disk
    as much as writing; in-place copies measured 2-4x faster here, which is the rename,
    not the cipher)."""
    from exo.security import sealedfile

    tmp = f"{dst}.tmp"
    buf = bytearray(1 << 20)
    with open(src, "rb", buffering=0) as fin, open(tmp, "wb", buffering=0) as fout:
        write = sealedfile.fd_writer(fout.fileno(), write_behind=True)
        while n := fin.readinto(buf):
            write(memoryview(buf)[:n])
        os.fsync(fout.fileno())
    os.replace(tmp, dst)


def bench_storage(size_mb: int, runs: int) -> tuple[dict[str, float], float]:
    """Rates (median MB/s of each case) and the median of the per-run ratios
    encrypted / plain. The disk's writeback swings a lot on this shared VM (the same case
    varies 2-3x between runs), so the order alternates each run, a warm-up pair is
    dropped, and the ratio of each run's pair is what the claim is judged on."""
    from exo.security import sealedfile

    key = os.urandom(32)
    with tempfile.TemporaryDirectory(prefix="exo-bench-sec-", dir=Path.home()) as tmp:
        src, mid, out = (os.path.join(tmp, n) for n in ("src", "mid", "out"))
        with open(src, "wb") as f:
            f.write(os.urandom(size_mb << 20))

        def plain() -> None:
            _copy(src, mid)
            _copy(mid, out)

        def encrypted() -> None:
            sealedfile.encrypt_file(key, src, mid)
            sealedfile.decrypt_file(key, mid, out)

        return _alternate(plain, encrypted, 2 * size_mb, runs)


def _alternate(plain: Callable[[], None], encrypted: Callable[[], None], mb: int,
               runs: int) -> tuple[dict[str, float], float]:
    """``runs`` pairs of ``plain`` and ``encrypted``, each moving ``mb`` MB, the order
    alternating, after one warm-up pair (page cache, file allocation) that is dropped:
    each case's median MB/s and the median of the per-run ratios encrypted / plain."""
    cases = {"plain": plain, "encrypted": encrypted}
    rates: dict[str, list[float]] = {"encrypted": [], "plain": []}
    ratios: list[float] = []
    for run in range(runs + 1):
        got: dict[str, float] = {}
        for case in (("plain", "encrypted") if run % 2 else ("encrypted", "plain")):
            t0 = time.perf_counter()
            cases[case]()
            got[case] = mb / (time.perf_counter() - t0)
        if run == 0:
            continue
        for case, rate in got.items():
            rates[case].append(rate)
        ratios.append(got["encrypted"] / got["plain"])
    return ({k: round(statistics.median(v), 1) for k, v in rates.items()},
            round(statistics.median(ratios), 3))


def bench_memory(size_mb: int, runs: int) -> tuple[dict[str, float], float]:
    """``bench_storage``'s two passes between memfds: plain copies against seal then open
    streams (``sealedfile``), same chunk size, same alternation, per-run ratios."""
    from exo.security import sealedfile as sf

    key = os.urandom(32)
    src, mid, out = (os.memfd_create(f"exo-bench-{n}", os.MFD_CLOEXEC) for n in "smo")
    try:
        sf.fd_writer(src)(memoryview(os.urandom(size_mb << 20)))
        buf = bytearray(1 << 20)

        def copy(a: int, b: int) -> None:
            os.lseek(a, 0, os.SEEK_SET)
            os.ftruncate(b, 0)
            os.lseek(b, 0, os.SEEK_SET)
            view = memoryview(buf)
            while n := os.readv(a, [view]):
                sf.fd_writer(b)(view[:n])

        def crypt() -> None:
            for fd in (src, mid, out):
                os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(mid, 0)
            os.ftruncate(out, 0)
            sf.seal_stream(key, sf.new_header(), sf.fd_reader(src), sf.fd_writer(mid))
            size = os.lseek(mid, 0, os.SEEK_CUR)
            os.lseek(mid, 0, os.SEEK_SET)
            sf.open_stream(key, sf.fd_reader(mid), sf.fd_writer(out), size)

        def plain() -> None:
            copy(src, mid)
            copy(mid, out)

        return _alternate(plain, crypt, 2 * size_mb, runs)
    finally:
        for fd in (src, mid, out):
            os.close(fd)


def bench_crypto(n: int) -> dict[str, dict[str, float]]:
    from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa, mlkem, x25519

    from exo.security import pq

    msg = os.urandom(1024)
    ed = ed25519.Ed25519PrivateKey.generate()
    ml = mldsa.MLDSA65PrivateKey.generate()
    hy = pq.HybridSigningKey.generate()
    ed_sig, ml_sig, hy_sig = ed.sign(msg), ml.sign(msg), hy.sign(msg)
    ed_pub, ml_pub, hy_pub = ed.public_key(), ml.public_key(), hy.public_key()
    x_peer = x25519.X25519PrivateKey.generate()
    x_peer_pub = x_peer.public_key()
    kem = mlkem.MLKEM768PrivateKey.generate()
    kem_pub = kem.public_key()
    hk = pq.HybridKemPrivate.generate()
    hk_pub = hk.public_key()

    def x25519_round() -> None:
        eph = x25519.X25519PrivateKey.generate()
        eph.exchange(x_peer_pub)
        x_peer.exchange(eph.public_key())

    def mlkem_round() -> None:
        _ss, ct = kem_pub.encapsulate()
        kem.decapsulate(ct)

    def hybrid_round() -> None:
        _ss, ct = hk_pub.encapsulate()
        hk.decapsulate(ct)

    return {
        "sign_us": {"ed25519": _median_us(lambda: ed.sign(msg), n),
                    "ml_dsa_65": _median_us(lambda: ml.sign(msg), n),
                    "hybrid": _median_us(lambda: hy.sign(msg), n)},
        "verify_us": {"ed25519": _median_us(lambda: ed_pub.verify(ed_sig, msg), n),
                      "ml_dsa_65": _median_us(lambda: ml_pub.verify(ml_sig, msg), n),
                      "hybrid": _median_us(lambda: hy_pub.verify(hy_sig, msg), n)},
        "kem_us": {"x25519": _median_us(x25519_round, n),
                   "ml_kem_768": _median_us(mlkem_round, n),
                   "hybrid": _median_us(hybrid_round, n)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs (under 3 minutes)")
    args = ap.parse_args()
    boot_runs, size_mb, storage_runs, n = (5, 64, 5, 300) if args.quick else (15, 256, 9, 2000)
    t0 = time.perf_counter()
    boot_ms, step_ms = bench_boot(boot_runs)
    results: dict[str, object] = {"boot_ms": boot_ms}
    # the Security step's own time in the same boots (its row of the boot log): what
    # measuring costs without the whole boot's noise around it
    results["boot_security_step_ms"] = step_ms
    results["storage_mb_per_s"], ratio = bench_storage(size_mb, storage_runs)
    results["storage_encrypted_over_plain"] = ratio  # median of per-run ratios
    # the same between memfds (no disk): the cipher's own cost, as the kernel's area
    # server pays it when it decrypts a file for an app
    results["storage_memory_mb_per_s"], cached = bench_memory(size_mb, storage_runs)
    results["storage_memory_encrypted_over_plain"] = cached
    results.update(bench_crypto(n))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    boot, storage = results["boot_ms"], results["storage_mb_per_s"]
    assert isinstance(boot, dict) and isinstance(storage, dict)
    print(f"measuring adds {boot['measured'] - boot['unmeasured']:.1f} ms to boot "
          f"(the Security step: {step_ms['measured'] - step_ms['unmeasured']:.1f} ms) "
          f"(target < 20); encrypted storage at {ratio:.0%} of plain, median of per-run "
          f"ratios (target ≥ 50 %), {cached:.0%} in memory; "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
