"""Layer 1: exact command forms (grammar.lark), matched whole with lark.

A match is certain (confidence 1.0) and carries its slots straight from the parse tree;
anything the grammar does not cover falls through to the model. Earley keeps the grammar
readable (keywords and free names overlap, e.g. "install install"); inputs are short and
bounded (normalise.MAX_CHARS), so its cost is too.
"""

from __future__ import annotations

import threading
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import LarkError

#: rule name in grammar.lark -> catalogue intent
_RULES: dict[str, str] = {
    "sys_cpu": "sys.cpu_usage", "sys_mem": "sys.memory_usage", "sys_disk": "sys.disk_usage",
    "sys_info": "sys.info", "proc_list": "proc.list", "proc_top_cpu": "proc.top_cpu",
    "proc_top_mem": "proc.top_memory", "proc_kill": "proc.kill", "power_save": "power.save",
    "power_perf": "power.performance", "power_bal": "power.balanced",
    "pkg_install": "pkg.install", "pkg_remove": "pkg.remove", "pkg_upgrade": "pkg.upgrade",
    "pkg_search": "pkg.search", "module_list": "module.list",
    "module_upgrade": "module.upgrade", "module_rollback": "module.rollback",
    "cap_list": "cap.list", "cap_revoke": "cap.revoke", "sec_status": "sec.status",
    "sec_audit": "sec.audit", "net_status": "net.status", "fs_find": "fs.find",
    "shutdown": "sys.shutdown", "help": "help",
}

#: terminal -> slot name, per intent where it differs
_SLOT_OF: dict[str, str] = {
    "PID": "target", "PROCNAME": "target", "MODPATH": "module", "VERSION": "version",
    "CAPURI": "capability", "FILENAME": "name",
}
_PACKAGE_SLOT = {"pkg.search": "query"}
_MAX_FORM_WORDS = 8  # "exo module upgrade net/loop --version 2.1.5" is 6
_MAX_FORM_CHARS = 400


class CommandGrammar:
    """The compiled grammar; ``match`` is safe to call from several threads."""

    def __init__(self) -> None:
        text = (resources.files("exo.agents.intent") / "grammar.lark").read_text("utf-8")
        self._lark = Lark(text, parser="earley", lexer="dynamic", ambiguity="resolve")
        self._lock = threading.Lock()  # lark does not promise that parse() is re-entrant

    def match(self, sentence: str) -> tuple[str, dict[str, str]] | None:
        """(intent, slots) when the whole sentence is a command form, else None."""
        text = sentence.strip().rstrip(".!").strip()
        # No command form is longer: skip Earley on long (perhaps hostile) input.
        if not text or len(text) > _MAX_FORM_CHARS or len(text.split()) > _MAX_FORM_WORDS:
            return None
        try:
            with self._lock:
                tree = self._lark.parse(text)
        except LarkError:
            return None
        command = tree.children[-1]
        if not isinstance(command, Tree):
            return None
        intent = _RULES[str(command.data)]
        slots: dict[str, str] = {}
        for token in command.scan_values(lambda v: isinstance(v, Token)):
            kind = token.type
            if kind == "PACKAGE":
                slots[_PACKAGE_SLOT.get(intent, "package")] = str(token).lower()
            elif kind in _SLOT_OF:
                value = str(token)
                if kind == "VERSION":
                    value = value.lstrip("vV")
                elif kind in ("MODPATH", "PROCNAME"):
                    value = value.lower() if kind == "MODPATH" else value
                slots[_SLOT_OF[kind]] = value
        return intent, slots
