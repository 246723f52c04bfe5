"""Asking back: when the parser hesitates between intents, name them and let the user pick.

A guess acted on is worse than a question: "how hard is the CPU working" may want the CPU
usage or the processes using the most CPU, and the parser's ``candidates`` say so. The
assistant then answers "Did you mean: the CPU usage, or the processes using the most
CPU? Answer 1 or 2." and keeps a :class:`Question`; the next reply "1", "2", "yes" (the
first) or "no" (neither) picks from it. Slots are extracted again for the intent picked,
from the sentence first asked, so "kill it"-style replies never need the slot repeated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from exo.agents.intents import BY_NAME, Intent

#: How each intent is named in a question: (English, French).
PHRASES: Final[dict[str, tuple[str, str]]] = {
    "sys.cpu_usage": ("the CPU usage", "l'usage CPU"),
    "sys.memory_usage": ("the memory usage", "l'usage de la mémoire"),
    "sys.disk_usage": ("the disk usage", "l'usage du disque"),
    "sys.info": ("the system information (uptime, version, hardware)",
                 "les informations système (durée de fonctionnement, version, matériel)"),
    "proc.list": ("the list of processes", "la liste des processus"),
    "proc.top_cpu": ("the processes using the most CPU",
                     "les processus qui utilisent le plus de CPU"),
    "proc.top_memory": ("the processes using the most memory",
                        "les processus qui utilisent le plus de mémoire"),
    "proc.kill": ("stopping a process", "arrêter un processus"),
    "power.save": ("the power-saver profile", "le profil économie d'énergie"),
    "power.performance": ("the performance profile", "le profil performance"),
    "power.balanced": ("the balanced profile", "le profil équilibré"),
    "pkg.install": ("installing a package", "installer un paquet"),
    "pkg.remove": ("removing a package", "supprimer un paquet"),
    "pkg.upgrade": ("upgrading packages", "mettre à jour des paquets"),
    "pkg.search": ("searching the package repositories", "chercher dans les dépôts de paquets"),
    "module.list": ("the list of loaded modules", "la liste des modules chargés"),
    "module.upgrade": ("upgrading a module", "mettre à jour un module"),
    "module.rollback": ("rolling a module back", "revenir à la version précédente d'un module"),
    "cap.list": ("the capabilities held", "les capacités détenues"),
    "cap.revoke": ("revoking a capability", "révoquer une capacité"),
    "sec.status": ("the security status (TPM, HSM, post-quantum)",
                   "l'état de la sécurité (TPM, HSM, post-quantique)"),
    "sec.audit": ("the audit log", "le journal d'audit"),
    "net.status": ("the network status", "l'état du réseau"),
    "fs.find": ("finding a file", "trouver un fichier"),
    "sys.shutdown": ("shutting Exo-OS down", "arrêter Exo-OS"),
    "help": ("what I can do", "ce que je sais faire"),
}

_YES = frozenset({"yes", "y", "yeah", "yep", "ok", "oui", "o", "ouais", "d'accord"})
_NO = frozenset({"no", "n", "nope", "neither", "non", "aucun", "aucune", "ni l'un ni l'autre"})


def phrase(intent: str, lang: str) -> str:
    en, fr = PHRASES.get(intent, (BY_NAME[intent].summary, BY_NAME[intent].summary))
    return fr if lang == "fr" else en


@dataclass(frozen=True, slots=True)
class Question:
    """An open question: the sentence asked, the intents offered (best first)."""

    sentence: str
    choices: tuple[str, ...]
    lang: str = "en"

    def text(self) -> str:
        names = [phrase(c, self.lang) for c in self.choices]
        numbers = " ou ".join(str(i) for i in range(1, len(names) + 1)) if self.lang == "fr" \
            else " or ".join(str(i) for i in range(1, len(names) + 1))
        if self.lang == "fr":
            return f"Vouliez-vous dire : {', ou '.join(names)} ? Répondez {numbers}."
        return f"Did you mean: {', or '.join(names)}? Answer {numbers}."

    def pick(self, reply: str, modules: Sequence[str] = ()) -> Intent | bool | None:
        """The intent a reply picks; False when it declines; None when the reply is no
        answer to this question (a new sentence: the caller parses it)."""
        from exo.agents.intent.slots import extract

        word = reply.strip().strip(".!?").strip().lower()
        if word in _NO:
            return False
        index = 0 if word in _YES else (int(word) - 1 if word.isdigit() and len(word) < 3
                                         else -1)
        if not 0 <= index < len(self.choices):
            return None
        name = self.choices[index]
        return Intent(name, extract(name, self.sentence, modules), 1.0, self.lang)


def question_for(intent: Intent, sentence: str) -> Question | None:
    """The question to ask for a parsed sentence, or None when the parser was sure."""
    choices = tuple(c for c in intent.candidates if c in PHRASES)
    if len(choices) < 2:
        return None
    return Question(sentence, choices[:2], intent.lang or "en")
