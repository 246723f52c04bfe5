"""Build and sign test modules: the same echo service in versions that behave well, go
unhealthy under traffic, fail every request, crash on start or ask for too much."""

from __future__ import annotations

import hashlib
from pathlib import Path

from exo.pkg import format as fmt
from exo.pkg import sign

SERVICE = '''
served = imported = 0
def handle(request):
    global served
    if request == b"count":
        return str(served).encode()
    served += 1
    return b"TAG:" + request
def export_state():
    return str(served).encode()
def import_state(data):
    global served, imported
    served = imported = int(data or b"0")
'''

BEHAVIOURS = {
    "good": SERVICE,
    # healthy when started, unhealthy once it has served traffic
    "sickens": SERVICE + "def health():\n    return served == imported\n",
    "fails": SERVICE.replace('return b"TAG:" + request', 'raise ValueError("broken")'),
    "crashes": "raise SystemExit('module init failed: missing config')\n",
}


def build(directory: Path, root: Path, version: str, behaviour: str = "good", *,
          name: str = "echo", caps: tuple[str, ...] = (), signer: sign.Signer | None = None,
          service: str | None = None) -> Path:
    """``directory/NAME-VERSION.exopkg``: a module answering ``vVERSION:`` + request."""
    code = BEHAVIOURS[behaviour].replace("TAG", f"v{version}").encode()
    caps_toml = ", ".join(f'"{c}"' for c in caps)
    manifest = (f'[package]\nname = "{name}"\nversion = "{version}"\n\n'
                f'[binary]\ntype = "python"\nkind = "module"\nentry = "main.py"\n\n'
                f'[module]\nservice = "ipc://{service or name}"\n\n'
                f'[sandbox]\ncapabilities = [{caps_toml}]\n').encode()
    entry = fmt.Entry("main.py", size=len(code), sha256=hashlib.sha256(code).hexdigest())
    out = directory / f"{name}-{version}.exopkg"
    return fmt.write_package(out, manifest, [(entry, code)],
                             signer or sign.load_signer(root))
