"""The English command forms of the catalogue, as spoken: what the voice grammar accepts.

One row per intent (a contract with exo.agents.intents: every intent but ``unknown`` has
forms, tests/unit/agents/test_voice.py checks it). ``<slot>`` names a rule of SLOT_RULES;
``[word]`` is optional. Every form, with its slots filled and the spoken words written back
(voice.written), is a sentence the parser understands: the round-trip test checks it.
"""

from __future__ import annotations

from typing import Final

ENGLISH_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "sys.cpu_usage": ("show [the] cpu usage", "what is the cpu usage"),
    "sys.memory_usage": ("show [the] memory usage", "how much memory is used"),
    "sys.disk_usage": ("show [the] disk usage", "how much disk space is left"),
    "sys.info": ("show [the] system information", "how long has the system been up"),
    "proc.list": ("list [the] processes", "show [the] running processes"),
    "proc.top_cpu": ("which process uses the most cpu",),
    "proc.top_memory": ("which process uses the most memory",),
    "proc.kill": ("kill process <pid>", "kill <process>"),
    "power.save": ("switch to power saver [mode]",),
    "power.performance": ("switch to performance mode",),
    "power.balanced": ("switch to balanced mode",),
    "pkg.install": ("install <package>",),
    "pkg.remove": ("remove <package>", "uninstall <package>"),
    "pkg.upgrade": ("upgrade <package>", "upgrade all packages"),
    "pkg.search": ("search packages for <package>",),
    "module.list": ("list [the] modules",),
    "module.upgrade": ("upgrade <module> [to version <version>]",),
    "module.rollback": ("roll back <module>",),
    "cap.list": ("list [the] capabilities [of <process>]",),
    "cap.revoke": ("revoke [the] capabilities of <process>",),
    "sec.status": ("show [the] security status",),
    "sec.audit": ("show [the] audit log",),
    "net.status": ("show [the] network status",),
    "fs.find": ("find [the] file <file>",),
    "sys.shutdown": ("shut down [the] system", "shutdown [the] system", "power off [the] system"),
    "help": ("help", "what can you do"),
}

_DIGITS = "zero | one | two | three | four | five | six | seven | eight | nine"

#: Slot rules of the voice grammar (JSGF bodies). Names outside the English dictionary
#: get a pronunciation in voice.PRONUNCIATIONS.
SLOT_RULES: Final[dict[str, str]] = {
    "digit": _DIGITS,
    "pid": "<digit>+",
    "version": "<digit> point <digit> [point <digit>]",
    "package": "nginx | redis | firefox | vim | git | curl | python | emacs",
    "process": "firefox | nginx | python | bash | vim",
    "module": "net loop | block file | the network driver | the block driver",
    "file": "(report | notes | budget | photo | readme) dot (pdf | text | jpeg | markdown)",
}
