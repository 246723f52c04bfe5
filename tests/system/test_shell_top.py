"""``top`` at a real terminal, in the shell ``exo boot`` starts: it redraws until ``q`` or
Ctrl-C, which it reads as keys (the session and its jobs are untouched)."""

from __future__ import annotations

import pexpect
from tests.system.test_interactive import PROMPT, boot_terminal, login


def test_top_is_live_until_q_or_ctrl_c(exo_env: dict[str, str]) -> None:
    with boot_terminal(exo_env) as term:
        login(term)
        for key in ("q", "\x03"):
            term.sendline("top -d 0.2")
            term.expect("top - ")
            term.expect("scheduler kernel: predictive")
            term.expect("top - ")  # redrawn
            term.send(key)
            term.expect(PROMPT, timeout=15)
            term.sendline('echo "status=$?"')
            term.expect("status=0")
            term.expect(PROMPT)
        term.sendline("shutdown")
        term.expect(pexpect.EOF)
