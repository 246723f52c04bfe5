"""``exo publish --repo http://…``: a package sent to ``exo repo serve``, which verifies
it and signs new TUF metadata with the repository's online keys (files or HSM).

No account or token: the package's own hybrid signature says who publishes. The server
takes a package only from a signer the repository already lists as a publisher
(``x-exo-publishers``) or one named by ``exo repo serve --allow-publisher``
(a fingerprint, or its first 16 or more hex digits as ``exo build`` prints). Everything
the client sends is hostile until checked: the body needs a ``Content-Length`` within
``max_upload``, goes to a private spool file (never to ``targets/`` directly), and is
read with ``exo.pkg.format`` (every bound of a package read) before anything is signed.
Answers are one JSON object: ``{"published": NAME, "version": V}`` or ``{"error": …}``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from exo.pkg import PkgError

PATH = "/upload"
_FINGERPRINT = re.compile(r"^[0-9a-f]{16,64}$")


class UploadError(PkgError):
    """A package the repository server did not take; the text is the server's reason."""


def answer(handler: Any, status: int, body: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def check_fingerprints(allow: tuple[str, ...]) -> tuple[str, ...]:
    for a in allow:
        if not _FINGERPRINT.match(a):
            raise PkgError(f"bad publisher fingerprint {a!r} (16 to 64 hex digits, as "
                           "exo build prints)")
    return allow


class Receiver:
    """The server's side: one upload at a time per repository (``Repository.locked``)."""

    def __init__(self, repo: Any, allow: tuple[str, ...], max_upload: int) -> None:
        self.repo = repo
        self.allow = check_fingerprints(allow)
        self.max_upload = max_upload
        self.spool = repo.path / ".incoming"
        self.spool.mkdir(mode=0o700, exist_ok=True)

    def allowed(self, signer: str) -> bool:
        from exo.pkg.repo import PUBLISHERS

        known = self.repo._load("targets").signed.unrecognized_fields.get(PUBLISHERS, [])
        return signer in known or any(signer.startswith(a) for a in self.allow)

    def handle(self, handler: Any) -> None:
        try:
            length = int(handler.headers.get("Content-Length", ""))
        except ValueError:
            answer(handler, 411, {"error": "an upload needs a Content-Length"})
            return
        if not 0 < length <= self.max_upload:
            answer(handler, 413, {"error": f"an upload is 1 to {self.max_upload} bytes, "
                                           f"not {length}"})
            handler.close_connection = True
            return
        status, body = self._receive(handler, length)
        answer(handler, status, body)  # the spool file is gone before anyone hears back

    def _receive(self, handler: Any, length: int) -> tuple[int, dict[str, str]]:
        from exo.pkg import PkgError

        fd, name = tempfile.mkstemp(dir=self.spool, suffix=".exopkg")
        try:
            with os.fdopen(fd, "wb") as f:
                left = length
                while left:
                    chunk = handler.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        return 400, {"error": "the upload ended early"}
                    f.write(chunk)
                    left -= len(chunk)
            pkg = self.repo.publish(Path(name), allowed=self.allowed)
        except PkgError as exc:
            status = 409 if "already published" in str(exc) else \
                403 if "may not publish" in str(exc) else 400
            return status, {"error": str(exc)}
        except OSError as exc:
            return 500, {"error": f"cannot store the upload: {exc.strerror}"}
        finally:
            Path(name).unlink(missing_ok=True)
        return 200, {"published": pkg.manifest.name, "version": pkg.manifest.version}


def send(pkg_path: Path, url: str, timeout: float = 300) -> dict[str, str]:
    """The client's side: POST the package; the server's answer, or its error as one
    ``UploadError`` line."""
    size = pkg_path.stat().st_size
    with open(pkg_path, "rb") as body:
        request = urllib.request.Request(
            url.rstrip("/") + PATH, data=body, method="POST",
            headers={"Content-Type": "application/octet-stream",
                     "Content-Length": str(size)})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                reply: dict[str, str] = json.loads(resp.read(1 << 16))
                return reply
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read(1 << 16))["error"]
            except (ValueError, KeyError, TypeError):
                reason = f"HTTP {exc.code} {exc.reason}"
            raise UploadError(f"{url}: {reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", exc)
            raise UploadError(f"{url}: cannot reach the repository ({why})") from None
        except ValueError:
            raise UploadError(f"{url}: the server's answer is not JSON") from None
