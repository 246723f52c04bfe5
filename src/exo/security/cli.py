"""The security commands: ``exo tpm``, ``exo attest``, ``exo keys``, ``exo crypto``,
``exo audit``.

Registered on the ``exo`` group by one block at the end of ``exo.cli.commands``
(``register(main)``). Each command imports the heavy libraries it needs itself, so
``exo --help`` stays cheap. Errors are one line on stderr and a non-zero exit; listings
are rich tables on a terminal and JSON with ``--json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

_ROOT_HELP = "Exo file tree (default: $EXO_ROOT, else ~/.local/share/exo)."
root_option = click.option("--root", type=click.Path(file_okay=False), help=_ROOT_HELP)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _root(root: str | None) -> Path:
    from exo.kernel.config import resolve_root

    return resolve_root(root)


def _fail(message: str, status: int = 1) -> NoReturn:
    click.echo(f"exo: {message}", err=True)
    raise SystemExit(status)


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title, header_style="bold cyan")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def register(main: click.Group) -> None:
    """Add the security groups to the ``exo`` command."""
    for group in (tpm, attest, keys, crypto, audit, area, tunnel):
        main.add_command(group)


# ---------------------------------------------------------------------------- tpm


@click.group()
def tpm() -> None:
    """The TPM: a hardware one when /dev/tpmrm0 exists, else swtpm for development."""


@tpm.command("start")
@click.option("--ek-cert/--no-ek-cert", default=True, show_default=True,
              help="Manufacture a new TPM state with EK certificates signed by this tree's "
              "local CA (var/lib/tpm/ek-ca.pem); an existing state is kept.")
@root_option
def tpm_start(ek_cert: bool, root: str | None) -> None:
    """Start swtpm on a loopback port (state under var/lib/tpm)."""
    from exo.security import tpm as t

    base = _root(root)
    location = t.locate(base)
    if location is not None and location.kind == "hardware":
        click.echo(f"hardware TPM {t.DEVICE} present: swtpm not needed")
        return
    try:
        info = t.start_swtpm(base, ek_cert=ek_cert)
    except t.TpmError as exc:
        _fail(str(exc))
    click.echo(f"swtpm running: pid {info['pid']}, {t.HOST}:{info['port']} "
               f"(state {info['state']})")


@tpm.command("stop")
@root_option
def tpm_stop(root: str | None) -> None:
    """Stop this tree's swtpm (its state, hence its keys, is kept)."""
    from exo.security import tpm as t

    click.echo("swtpm stopped" if t.stop_swtpm(_root(root)) else "swtpm was not running")


@tpm.command("status")
@root_option
@json_option
def tpm_status(root: str | None, as_json: bool) -> None:
    """Which TPM is in use and the measured PCR's value."""
    from exo.security import tpm as t

    base = _root(root)
    location = t.locate(base)
    status: dict[str, Any] = {"tpm": None, "pcr": t.PCR}
    if location is not None:
        status["tpm"] = location.kind
        status["where"] = location.describe()
        try:
            status["pcr_value"] = t.read_pcr(location).hex()
        except (OSError, t.TpmError) as exc:
            _fail(f"{location.describe()} does not answer: {exc}")
        info = t.swtpm_info(base)
        if info is not None:
            status["pid"] = info["pid"]
    events = t.read_event_log(base)
    status["events"] = len(events)
    status["log_replays_to"] = t.replay(events).hex()
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    if location is None:
        click.echo("no TPM: /dev/tpmrm0 absent and swtpm not running (exo tpm start)")
    else:
        click.echo(f"TPM: {status['where']}")
        click.echo(f"PCR {t.PCR}: {status['pcr_value']}")
    click.echo(f"event log: {len(events)} events, replays to {status['log_replays_to']}")


@tpm.command("seal")
@click.argument("name")
@root_option
def tpm_seal(name: str, root: str | None) -> None:
    """Seal a secret read from standard input (≤ 128 bytes) to the measured PCR."""
    from exo.security import tpm as t

    secret = sys.stdin.buffer.read()
    try:
        path = t.seal(_root(root), name, secret)
    except t.TpmError as exc:
        _fail(str(exc))
    click.echo(f"sealed {len(secret)} bytes to PCR {t.PCR}: {path}")


@tpm.command("unseal")
@click.argument("name")
@root_option
def tpm_unseal(name: str, root: str | None) -> None:
    """Write a sealed secret to standard output; fails while the PCR differs."""
    from exo.security import tpm as t

    try:
        secret = t.unseal(_root(root), name)
    except t.TpmError as exc:
        _fail(str(exc))
    sys.stdout.buffer.write(secret)


@tpm.command("reseal")
@click.argument("name")
@click.option("--keep-current/--drop-current", default=True, show_default=True,
              help="Keep accepting the running kernel's PCR value (until the next reseal).")
@root_option
def tpm_reseal(name: str, keep_current: bool, root: str | None) -> None:
    """After installing an update, before rebooting: re-seal NAME to the PCR value the
    code now on disk will measure (predicted from its files), and to the current one."""
    from exo.security import tpm as t

    try:
        current, predicted = t.reseal(_root(root), name, keep_current=keep_current)
    except t.TpmError as exc:
        _fail(str(exc))
    if predicted == current:
        click.echo(f"resealed {name} to PCR {t.PCR} = {current.hex()[:16]}… (the code on "
                   "disk is what is running)")
    else:
        kept = f" and the current {current.hex()[:16]}…" if keep_current else ""
        click.echo(f"resealed {name} to PCR {t.PCR} = {predicted.hex()[:16]}… (predicted "
                   f"for the code on disk){kept}; after the reboot, `exo tpm reseal {name}` "
                   "drops the old value")


# ------------------------------------------------------------------------- attest


@click.group()
def attest() -> None:
    """Measured boot: the event log, quotes, and their verification."""


@attest.command("log")
@root_option
@json_option
def attest_log(root: str | None, as_json: bool) -> None:
    """The measured-boot event log, and whether it replays to the TPM's PCR."""
    from exo.security import tpm as t

    base = _root(root)
    events = t.read_event_log(base)
    value = t.replay(events)
    location = t.locate(base)
    actual = None
    if location is not None:
        try:
            actual = t.read_pcr(location)
        except (OSError, t.TpmError):
            actual = None
    if as_json:
        click.echo(json.dumps({"pcr": t.PCR, "events": events, "replay": value.hex(),
                               "tpm_value": actual.hex() if actual else None}, indent=2))
        return
    if not events:
        click.echo("no measurements yet (the Security step runs in DEFERRED at boot)")
        return
    if sys.stdout.isatty():
        _table(f"PCR {t.PCR} event log", ["#", "KIND", "COMPONENT", "SHA-256"],
               [[str(e["seq"]), e["kind"], e["name"], e["digest"]] for e in events])
    else:
        for e in events:
            click.echo(f"{e['seq']:3} {e['kind']:9} {e['digest']} {e['name']}")
    click.echo(f"replay: PCR {t.PCR} = {value.hex()}")
    if actual is None:
        click.echo("TPM: not reachable (the log is unmeasured)")
    elif actual == value:
        click.echo("TPM: matches the replay")
    else:
        click.echo(f"TPM: PCR {t.PCR} = {actual.hex()} DOES NOT match the replay")


def _nonce(text: str) -> bytes:
    try:
        nonce = bytes.fromhex(text)
    except ValueError:
        _fail("--nonce must be hexadecimal")
    if not 1 <= len(nonce) <= 32:
        _fail("--nonce must be 1 to 32 bytes")
    return nonce


@attest.command("quote")
@click.option("--nonce", required=True, help="The verifier's challenge, hex (≤ 32 bytes).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the quote here.")
@root_option
def attest_quote(nonce: str, out: str | None, root: str | None) -> None:
    """A quote of the measured PCRs (23: boot, 16: audit anchors) signed by the TPM's
    attestation key."""
    from exo.security import tpm as t

    try:
        doc = t.quote(_root(root), _nonce(nonce))
    except t.TpmError as exc:
        _fail(str(exc))
    text = json.dumps(doc, indent=2)
    if out:
        Path(out).write_text(text + "\n")
        click.echo(f"quote of PCRs {t.AUDIT_PCR} and {t.PCR} ({len(doc['event_log'])} events, "
                   f"{len(doc['audit_anchors'])} audit anchors) written to {out}")
    else:
        click.echo(text)


@attest.command("verify")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--nonce", required=True, help="The challenge the quote must answer, hex.")
@click.option("--policy", type=click.Path(dir_okay=False),
              help="JSON: expected component digests and/or the trusted ak_public.")
@click.option("--ek-secret", type=click.Path(dir_okay=False),
              help="The secret kept by `exo attest challenge` (with --ek-answer).")
@click.option("--ek-answer", type=click.Path(dir_okay=False),
              help="What `exo attest activate` printed on the attested host.")
@root_option
def attest_verify(file: str, nonce: str, policy: str | None, ek_secret: str | None,
                  ek_answer: str | None, root: str | None) -> None:
    """Verify a quote: signature, nonce, event-log replay, and the policy (and, with
    --ek-secret/--ek-answer, that its AK is in the TPM the EK certificate names). Exit 0
    only when everything holds."""
    import hmac

    from exo.security import tpm as t

    if (ek_secret is None) != (ek_answer is None):
        _fail("--ek-secret and --ek-answer go together")
    if ek_secret is not None and ek_answer is not None:
        try:
            kept = Path(ek_secret).read_text().strip()
            answer = Path(ek_answer).read_text().strip()
        except OSError as exc:
            _fail(f"cannot read {exc.filename}: {exc.strerror}")
        if not hmac.compare_digest(kept.encode(), answer.encode()):
            _fail("verification FAILED: the attested host could not recover the EK "
                  "challenge: its AK is not in the TPM the EK certificate names")

    expected = _nonce(nonce)
    try:
        doc = json.loads(Path(file).read_text())
        pol = json.loads(Path(policy).read_text()) if policy else None
    except (OSError, ValueError) as exc:
        _fail(f"cannot read {exc.filename if isinstance(exc, OSError) else 'JSON'}: {exc}")
    if not isinstance(doc, dict) or (pol is not None and not isinstance(pol, dict)):
        _fail("the quote and the policy must be JSON objects")
    trusted = pol.get("ak_public") if pol else None
    if trusted is None:
        ak = t.Paths(_root(root)).ak_pub
        if not ak.exists():
            _fail("no trusted attestation key: give a policy with ak_public, or run on the "
                  "attested host")
        trusted = ak.read_text()
    try:
        value = t.verify_quote(doc, expected, trusted_ak_pem=str(trusted), policy=pol)
    except t.VerifyError as exc:
        _fail(f"verification FAILED: {exc}")
    click.echo(f"verified: PCR {t.PCR} = {value.hex()}, {len(doc['event_log'])} events"
               + (", all in the policy" if pol and "components" in pol else "")
               + (", EK certificate chains to the trusted CA" if pol and pol.get("ek_ca")
                  else "")
               + (", AK bound to that EK (credential activated)" if ek_secret else "")
               + f"; PCR {t.AUDIT_PCR}: {len(doc.get('audit_anchors', []))} audit anchors")


@attest.command("challenge")
@click.argument("quote_file", type=click.Path(dir_okay=False))
@click.option("--policy", required=True, type=click.Path(dir_okay=False),
              help="JSON with ek_ca: the CA the TPM's EK certificate must chain to.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The challenge, for the attested host (exo attest activate).")
@click.option("--keep", required=True, type=click.Path(dir_okay=False),
              help="The secret the verifier keeps (0600), for verify --ek-secret.")
def attest_challenge(quote_file: str, policy: str, out: str, keep: str) -> None:
    """Verifier: encrypt a secret to the quoting TPM's certified EK, for its AK only."""
    import os

    from exo.security import ekcert
    from exo.security import tpm as t

    doc, pol = _read_object(quote_file), _read_object(policy)
    if not pol.get("ek_ca"):
        _fail("the policy has no ek_ca (exo attest policy adds this tree's)")
    try:
        chal, secret = ekcert.challenge(doc, str(pol["ek_ca"]))
    except t.VerifyError as exc:
        _fail(f"no challenge: {exc}")
    Path(out).write_text(json.dumps(chal) + "\n")
    fd = os.open(keep, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex() + "\n")
    click.echo(f"challenge for the attested host written to {out}; secret kept in {keep}")


@attest.command("activate")
@click.argument("challenge_file", type=click.Path(dir_okay=False))
@root_option
def attest_activate(challenge_file: str, root: str | None) -> None:
    """Attested host: let the TPM recover a challenge's secret (printed, hex). It can
    only if the challenge was made for this TPM's EK and attestation key."""
    from exo.security import ekcert
    from exo.security import tpm as t

    location = t.locate(_root(root))
    if location is None:
        _fail("no TPM: /dev/tpmrm0 absent and swtpm not running (exo tpm start)")
    try:
        click.echo(ekcert.activate(location, _read_object(challenge_file)).hex())
    except t.TpmError as exc:
        _fail(str(exc))


def _read_object(path: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        _fail(f"cannot read {path}: {exc}")
    if not isinstance(doc, dict):
        _fail(f"{path} is not a JSON object")
    return doc


@attest.command("policy")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the policy here.")
@root_option
def attest_policy(out: str | None, root: str | None) -> None:
    """A policy accepting exactly what is measured now (and this TPM's attestation key)."""
    from exo.security import tpm as t

    base = _root(root)
    pol = t.policy_from_log(t.read_event_log(base))
    ak = t.Paths(base).ak_pub
    if ak.exists():
        pol["ak_public"] = ak.read_text()
    from exo.security import ekcert

    if ekcert.ca_bundle(base).exists():
        pol["ek_ca"] = ekcert.ca_bundle(base).read_text()
    text = json.dumps(pol, indent=2)
    if out:
        Path(out).write_text(text + "\n")
        click.echo(f"policy of {len(pol['components'])} components written to {out}")
    else:
        click.echo(text)


# --------------------------------------------------------------------------- keys


@click.group()
def keys() -> None:
    """Signing keys in the HSM (PKCS#11; SoftHSM2 under var/lib/hsm by default)."""


@keys.command("list")
@root_option
@json_option
def keys_list(root: str | None, as_json: bool) -> None:
    """The token's keys (and any file keys, marked as such)."""
    from exo.security import hsm

    try:
        rows = hsm.list_keys(_root(root))
    except hsm.HsmError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif sys.stdout.isatty():
        _table("keys", ["NAME", "TYPE", "WHERE", "FINGERPRINT"],
               [[r["name"], r["type"], r["where"], r["fingerprint"]] for r in rows])
    else:
        for r in rows:
            click.echo(f"{r['name']}\t{r['type']}\t{r['where']}\t{r['fingerprint']}")


@keys.command("create")
@click.argument("name")
@click.option("--type", "key_type", type=click.Choice(["ed25519", "p256", "hybrid"]),
              default="ed25519", show_default=True)
@click.option("--file-key", is_flag=True,
              help="No HSM: keep an Ed25519 private key in a file (a weaker fallback).")
@root_option
def keys_create(name: str, key_type: str, file_key: bool, root: str | None) -> None:
    """Create a key pair in the token (the private key never leaves it); print its
    public key."""
    from exo.security import hsm

    try:
        if file_key:
            click.echo("warning: --file-key keeps the private key on disk (var/lib/keys), "
                       "not in an HSM", err=True)
            pem = hsm.create_file_key(_root(root), name)
        else:
            pem = hsm.create(_root(root), name, key_type)
    except hsm.HsmError as exc:
        _fail(str(exc))
    click.echo(pem, nl=False)


@keys.command("sign")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--file-key", is_flag=True, help="Sign with the file key NAME.")
@root_option
def keys_sign(name: str, file: str, file_key: bool, root: str | None) -> None:
    """Sign FILE with key NAME; print the signature (hex)."""
    from exo.security import hsm

    data = Path(file).read_bytes()
    try:
        sig = hsm.sign_with_file_key(_root(root), name, data) if file_key \
            else hsm.sign(_root(root), name, data)
    except hsm.HsmError as exc:
        _fail(str(exc))
    click.echo(sig.hex())


# ------------------------------------------------------------------------- crypto


@click.group()
def crypto() -> None:
    """Cryptographic self-tests."""


@crypto.command("selftest")
@json_option
def crypto_selftest(as_json: bool) -> None:
    """Known-answer tests of every primitive (exit 0 only when all pass)."""
    from exo.security import selftest

    results = selftest.run()
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            mark = "ok  " if r["ok"] else "FAIL"
            click.echo(f"[{mark}] {r['test']}" + (f": {r['error']}" if r["error"] else ""))
    failed = [r for r in results if not r["ok"]]
    if failed:
        _fail(f"{len(failed)} of {len(results)} known-answer tests failed")


# -------------------------------------------------------------------------- audit


@click.group()
def audit() -> None:
    """The tamper-evident capability audit log."""


@audit.command("verify")
@root_option
@json_option
def audit_verify(root: str | None, as_json: bool) -> None:
    """Walk the audit log's hash chain across rotated files (and check the signed head
    when there is one). Exit 0 only when the chain is intact."""
    from exo.security import auditchain

    base = _root(root)
    files = auditchain.log_files(base)
    if not files:
        _fail(f"no audit log under {base}/var/log")
    head = None
    head_file = auditchain.head_path(base)
    if head_file.exists():
        try:
            head = json.loads(head_file.read_text())
        except ValueError:
            _fail(f"{head_file} is not JSON")
    anchors = auditchain.read_anchors(base)
    previous = auditchain.read_anchors(base, previous=True)
    signed = head is not None or any("signature" in a for a in (*anchors, *previous))
    trusted = auditchain.trusted_key(base, head.get("key", auditchain.SIGNER)
                                     if head else auditchain.SIGNER) if signed else None
    report = auditchain.verify(files, head, trusted)
    # the kernel's anchors of the head in the TPM (an empty log against a PCR that has
    # moved is a rewritten anchor log too)
    from exo.security import tpm as t

    location = t.locate(base)
    pcr_value = None
    if location is not None:
        try:
            pcr_value = t.read_pcr(location, auditchain.ANCHOR_PCR)
        except (OSError, t.TpmError):
            pcr_value = None
    if anchors or previous or pcr_value is not None:
        auditchain.check_anchors(report, anchors, pcr_value, trusted=trusted,
                                 previous=previous)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    if not report.ok:
        extra = f" (+{len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        _fail(f"audit chain BROKEN: {report.problems[0]}{extra}")
    if not as_json:
        start = "from its first record" if report.anchored else \
            "from the oldest record kept (older files rotated away)"
        click.echo(f"audit chain intact: {report.records} records in {len(files)} files, "
                   f"{start}" + ("; signed head verified" if report.head_checked else "")
                   + (f"; {report.anchors_checked} TPM anchors match PCR "
                      f"{auditchain.ANCHOR_PCR}" if report.anchors_checked else "")
                   + (f"; {report.anchors_signed} anchors signed by the HSM key"
                      if report.anchors_signed else ""))
        for note in report.notes:
            click.echo(f"note: {note}")


@audit.command("sign-head")
@click.option("--key", default="audit-head", show_default=True, help="HSM key name.")
@root_option
def audit_sign_head(key: str, root: str | None) -> None:
    """Sign the chain's current head with an HSM key (var/log/audit.head.json)."""
    from exo.security import auditchain, hsm

    try:
        head = auditchain.sign_head(_root(root), key)
    except (ValueError, hsm.HsmError) as exc:
        _fail(str(exc))
    click.echo(f"signed head: {head['records']} records, {head['hash'][:16]}…, key {key}")


# --------------------------------------------------------------------------- area


@click.group()
def area() -> None:
    """Encrypted storage:// areas: files kept as XChaCha20-Poly1305 ciphertext on disk."""


def _area_fail(exc: Exception) -> NoReturn:
    _fail(str(exc))


@area.command("create")
@click.argument("name")
@click.option("--label", help="The app the area belongs to (its key is derived per label; "
              "default: the directory's name).")
@click.option("--file-key", is_flag=True,
              help="No TPM: keep the storage master key in a file (a weaker fallback).")
@root_option
def area_create(name: str, label: str | None, file_key: bool, root: str | None) -> None:
    """Make the empty directory NAME (storage://...) an encrypted area."""
    from exo.security import areas, tpm

    if file_key:
        click.echo("warning: --file-key keeps the storage master key on disk "
                   "(var/lib/areas/master.key), not sealed in a TPM", err=True)
    try:
        made = areas.create(_root(root), name, label=label, file_key=file_key)
    except (areas.AreaError, tpm.TpmError, OSError) as exc:
        _area_fail(exc)
    click.echo(f"encrypted area storage://{made['path']} (label {made['label']}, key "
               f"generation {made['generation']}, master key: {made['master']})")


@area.command("list")
@root_option
@json_option
def area_list(root: str | None, as_json: bool) -> None:
    """The encrypted areas, their key generation and file count."""
    from exo.security import areas

    try:
        rows = areas.status(_root(root))
    except areas.AreaError as exc:
        _area_fail(exc)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no encrypted area (exo area create storage://DIR)")
        return
    _table("encrypted areas", ["AREA", "LABEL", "GENERATION", "FILES", "MASTER KEY"],
           [[f"storage://{r['path']}", r["label"],
             str(r["generation"]) + (f" → {r['rotating_to']} (interrupted: run rotate)"
                                     if r["rotating_to"] else ""),
             "?" if r["files"] is None else str(r["files"]), str(r["master"])] for r in rows])


@area.command("rotate")
@click.argument("name")
@root_option
def area_rotate(name: str, root: str | None) -> None:
    """Re-seal every file of area NAME under a new key generation (crash-safe: run it
    again after an interruption and it resumes)."""
    from exo.security import areas, tpm

    try:
        done = areas.rotate(_root(root), name)
    except (areas.AreaError, tpm.TpmError, OSError) as exc:
        _area_fail(exc)
    click.echo(f"storage://{done['path']}: key generation {done['generation']}, "
               f"{done['resealed']} files re-sealed"
               + (f", {done['already']} already done (resumed)" if done["resumed"] else ""))


@area.command("verify")
@click.argument("name")
@root_option
@json_option
def area_verify(name: str, root: str | None, as_json: bool) -> None:
    """Authenticate every file of area NAME. Exit 0 only when all are intact."""
    from exo.security import areas, tpm

    try:
        report = areas.verify(_root(root), name)
    except (areas.AreaError, tpm.TpmError, OSError) as exc:
        _area_fail(exc)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    if report["tampered"]:
        first, why = next(iter(report["tampered"].items()))
        _fail(f"storage://{report['path']}: {len(report['tampered'])} file(s) TAMPERED "
              f"({first}: {why})")
    if not as_json:
        click.echo(f"storage://{report['path']}: {len(report['intact'])} files intact "
                   f"(key generation {report['generation']})")


# ------------------------------------------------------------------------- tunnel


@click.group()
def tunnel() -> None:
    """Node tunnels over WireGuard (wireguard-go), configured from node identities."""


@tunnel.command("identity")
@click.option("--name", help="This node's name (first use).")
@click.option("--address", help="Its overlay address, e.g. 10.77.0.1/24 (first use).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the public identity here.")
@root_option
def tunnel_identity(name: str | None, address: str | None, out: str | None,
                    root: str | None) -> None:
    """This node's public identity (created on first use): give it to the peer."""
    from exo.security import tunnel as tn

    try:
        public = tn.public_identity(tn.identity(_root(root), name=name, address=address))
    except tn.TunnelError as exc:
        _fail(str(exc))
    text = json.dumps(public, indent=2)
    if out:
        Path(out).write_text(text + "\n")
        click.echo(f"node {public['name']} ({public['address']}): identity written to {out}")
    else:
        click.echo(text)


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        _fail(f"cannot read the {what} {path}: {exc}")


@tunnel.command("up")
@click.argument("peer", type=click.Path(dir_okay=False))
@click.option("--endpoint", required=True, help="The peer's HOST:PORT on the underlay.")
@click.option("--listen-port", default=51820, show_default=True, type=int)
@click.option("--offer-out", type=click.Path(dir_okay=False),
              help="Initiate: write the post-quantum key offer for the peer here.")
@click.option("--offer", "offer_in", type=click.Path(dir_okay=False),
              help="Respond: the peer's offer (its pre-shared key comes from it).")
@root_option
def tunnel_up(peer: str, endpoint: str, listen_port: int, offer_out: str | None,
              offer_in: str | None, root: str | None) -> None:
    """Bring up the tunnel to the node whose public identity is in PEER."""
    from exo.security import tunnel as tn

    if (offer_out is None) == (offer_in is None):
        _fail("give exactly one of --offer-out (initiate) and --offer (respond)")
    base = _root(root)
    doc = _read_json(peer, "peer identity")
    try:
        private = tn.identity(base)
        checked = tn.check_peer(doc)
        if offer_out is not None:
            offer, psk = tn.make_offer(private, checked)
            Path(offer_out).write_text(json.dumps(offer) + "\n")
        else:
            psk = tn.accept_offer(private, checked, _read_json(str(offer_in), "offer"))
        state = tn.up(base, checked, endpoint=endpoint, listen_port=listen_port, psk=psk)
    except tn.TunnelError as exc:
        _fail(str(exc))
    click.echo(f"tunnel {state['interface']} up: {state['address']} ↔ {checked['name']} "
               f"{state['peer_address']} via {endpoint} (wireguard-go pid {state['pid']}, "
               "X25519+ML-KEM-768 pre-shared key)")


@tunnel.command("down")
@root_option
def tunnel_down(root: str | None) -> None:
    """Stop this node's tunnel."""
    from exo.security import tunnel as tn

    click.echo("tunnel down" if tn.down(_root(root)) else "no tunnel was up")


@tunnel.command("status")
@root_option
@json_option
def tunnel_status(root: str | None, as_json: bool) -> None:
    """The tunnel, its peer and its last handshake."""
    from exo.security import tunnel as tn

    state = tn.status(_root(root))
    if as_json:
        click.echo(json.dumps(state, indent=2))
    elif state is None:
        click.echo("no tunnel up")
    else:
        shake = state.get("latest_handshake") or 0
        click.echo(f"{state['interface']}: {state['address']} ↔ {state['peer']} "
                   f"{state['peer_address']} via {state['endpoint']}; last handshake "
                   + (f"{time.time() - shake:.0f} s ago" if shake else "never")
                   + f", {state.get('rx_bytes', 0)} B in, {state.get('tx_bytes', 0)} B out")
