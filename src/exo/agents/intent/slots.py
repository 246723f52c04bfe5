"""Slot extraction for sentences the grammar did not match: rules over the sentence.

Each intent of the catalogue names its slots (exo.agents.intents); this module finds their
values in free phrasing: a pid or a process name after a verb, a package name after an
install verb, a module path or a phrase naming a driver ("the network driver", "le pilote
réseau") resolved to the installed module, a version, a capability URI, a file name.
Rules, not a model: the values are open-ended (any package, any file) and must come out
exactly as written.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence

from exo.agents.intent.normalise import CAP_URI_RE, FILE_RE, MODULE_PATH_RE, VERSION_RE, fold

#: Kind of driver a phrase names -> module path, when the running system's installed
#: modules are not known (Parser(modules=...) overrides it). The modules Exo-OS ships.
MODULE_ALIASES: dict[str, str] = {"net": "net/loop", "block": "block/file",
                                  "serial": "serial/pty"}

_KIND_WORDS: dict[str, frozenset[str]] = {
    "net": frozenset({"network", "networking", "net", "reseau", "ethernet", "nic", "wifi",
                      "internet"}),
    "block": frozenset({"block", "disk", "storage", "stockage", "disque", "bloc", "drive"}),
    "serial": frozenset({"serial", "serie", "pty", "tty", "uart", "console", "terminal",
                         "com"}),
}

_ELISION_RE = re.compile(r"\b(qu|[ldjnsctm])'", re.IGNORECASE)
_TOKEN_RE = re.compile(r"[\w][\w.+-]*")
_PID_RE = re.compile(r"(?<![\w.:/-])(\d{1,9})(?![\w.:/-])")
_QUOTED_RE = re.compile(r"[\"«“']([^\"»”']{1,255})[\"»”']")
_POSSESSIVE_RE = re.compile(r"([A-Za-z_][\w.+-]*)'s\b")

def _words(text: str) -> frozenset[str]:
    return frozenset(fold(w) for w in text.split())


# Words that are never a slot value (articles, fillers, the nouns around the value).
_FILLER = _words("""
the a an my this that these those its all any some every everything anything it them me
process processes program programs programme task app application pid processus tâche
package packages paquet paquets software logiciel logiciels lib library
now please right away immediately quickly for of to from on in with by at up down back
le la les l un une des de du d au aux ce cet cette ces mon ma mes ses son sa tout tous
toutes moi maintenant vite stp svp plait plaît pour dans avec sur à en version versions
latest newest last new recent updates update upgrades upgrade dernière dernières derniere
mise mises jour niveau system système systeme machine installed installé available
named called nommé nommée appelé appelée file files fichier fichiers
capability capabilities capacité capacités access accès acces rights droits permission
permissions its their leur leurs ses what quoi which quel quelle who qui
can you could would will peux-tu pouvez-vous tu vous i je j il me need want
is are be est sont do does did have has a-t-il ai avoir off anymore plus and et n'
""")

_KILL_VERBS = _words("""kill terminate stop end quit close tue termine
quitte quitter tue-le murder abort interromps interrompre sigkill sigterm arrete arrête
arrêter arreter arrêt arret stoppe stopper ferme fermer kill tuer terminer finish""")
_INSTALL_VERBS = _words("""install installe installer installe-moi add
ajoute ajouter need needs want get setup set besoin faut mets mettre download télécharge
put deploy déploie déployer grab fetch récupère installation""")
_REMOVE_VERBS = _words("""remove uninstall delete purge rid supprime
supprimer désinstalle désinstaller enlève enlever retire retirer efface effacer take
need besoin erase drop wipe vire virer débarrasser desinstallation désinstallation
supprime-le""")
_UPGRADE_VERBS = _words("""upgrade update updating upgrading actualise
actualiser jour niveau passe refresh of de""")
#: Words of the sentences around slot values: never taken as a package, process or file name
#: when a rule falls back to "the first word that is not an ordinary word".
_COMMON = _words("""
make sure use using used date est bloque bloqué sert needed not it le-la les-la it's
please merci ok okay just only also then so now again still already right there here
ne pas plus jamais encore aussi alors donc bien très tres vraiment
want veux voudrais aimerais souhaite like would should must dois doit faut
run running tourne lance launch start démarre program logiciel software tool outil
up jour à a au en sur sous dans by the that qui que quoi est sont is are was
""")

_FIND_VERBS = _words("""find locate where named called file fichier
trouve trouver localise cherche chercher nommé appelé est mis put""")
_TARGET_TRIGGERS = _words("""of from to for can process processus pid de du à a has have
does off revoke révoque revoquer withdraw coupe""")

_ALL_VERBS = _KILL_VERBS | _INSTALL_VERBS | _REMOVE_VERBS | _UPGRADE_VERBS | _FIND_VERBS | \
    _TARGET_TRIGGERS


@functools.cache
def ordinary_words() -> frozenset[str]:
    """Every word of the training templates outside their placeholders, minus the words
    that are slot values somewhere: the vocabulary of the sentences *around* a slot."""
    from exo.agents.intent import dataset

    words: set[str] = set()
    for _intent, _lang, template in dataset.templates():
        words.update(fold(t) for t in _tokens(re.sub(r"\{\w+\}", " ", template)))
    return frozenset(words - dataset.slot_value_words())


def _tokens(text: str) -> list[str]:
    text = _ELISION_RE.sub(lambda m: m.group(1) + "' ", text)
    return [t.rstrip(".-") for t in _TOKEN_RE.findall(text) if t.rstrip(".-")]


def _after(tokens: Sequence[str], triggers: Iterable[str], *,
           accept: Callable[[str], bool] = lambda _t: True) -> str | None:
    """The first ordinary-looking name after a trigger word; failing that, the first word
    of the sentence that is neither a trigger nor an ordinary word ("make firefox stop")."""
    trig = set(triggers)
    skip = _FILLER | _COMMON | _ALL_VERBS | ordinary_words()
    folded = [fold(t) for t in tokens]
    for i, low in enumerate(folded):
        if low not in trig:
            continue
        for nxt, nlow in zip(tokens[i + 1:], folded[i + 1:], strict=True):
            if nlow in trig:
                break  # that trigger's own turn comes next: linear, not quadratic
            if nlow in skip:
                continue
            if accept(nxt):
                return nxt
            break
    for tok, low in zip(tokens, folded, strict=True):
        if low not in skip and low not in trig and accept(tok):
            return tok
    return None


def _strip_uris(text: str) -> tuple[str, list[str]]:
    uris = [m.group(0).rstrip(".,;:!?") for m in CAP_URI_RE.finditer(text)]
    return CAP_URI_RE.sub(" ", text), uris


def _is_name(token: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.+-]{0,63}", token)) and not token.isdigit()


def _package(text: str, verbs: frozenset[str]) -> str | None:
    tokens = _tokens(text)
    # "the nginx package" / "le paquet nginx"
    for i, tok in enumerate(tokens):
        low = fold(tok)
        if low in ("package", "paquet") and i > 0 and fold(tokens[i - 1]) not in _FILLER \
                and fold(tokens[i - 1]) not in verbs:
            return tokens[i - 1].lower()
        if low in ("package", "paquet") and i + 1 < len(tokens) \
                and fold(tokens[i + 1]) not in _FILLER:
            return tokens[i + 1].lower()
    found = _after(tokens, verbs, accept=_is_name)
    return found.lower() if found else None


def _target(text: str, verbs: Iterable[str]) -> str | None:
    text, _ = _strip_uris(text)
    pid = _PID_RE.search(text)
    if pid:
        return pid.group(1)
    possessive = _POSSESSIVE_RE.search(text)
    if possessive and fold(possessive.group(1)) not in _FILLER:
        return possessive.group(1)
    tokens = _tokens(text)
    return _after(tokens, verbs, accept=_is_name)


def resolve_module(text: str, installed: Sequence[str] = ()) -> str | None:
    """A module path written out, or the installed module a phrase names."""
    text, _ = _strip_uris(text)
    path = MODULE_PATH_RE.search(text)
    if path:
        return path.group(1).lower()
    words = {fold(t) for t in _tokens(text)}
    for module in installed:  # "upgrade the loop driver": a word of an installed path
        if set(re.split(r"[/_.-]", module.lower())) & words - _FILLER - {"driver", "module"}:
            return module
    for kind, kind_words in _KIND_WORDS.items():
        if words & kind_words:
            for module in installed:
                if module.startswith(kind + "/"):
                    return module
            return MODULE_ALIASES[kind]
    return None


def _version(text: str) -> str | None:
    text, _ = _strip_uris(text)
    match = VERSION_RE.search(text)
    return match.group(1) if match else None


def _file_name(text: str) -> str | None:
    quoted = _QUOTED_RE.search(text)
    if quoted and quoted.group(1).strip():
        return quoted.group(1).strip()
    for match in FILE_RE.finditer(text):
        stem, _, ext = match.group(0).rpartition(".")
        if stem and not ext.isdigit():
            return match.group(0)
    found = _after(_tokens(text), _FIND_VERBS, accept=_is_name)
    return found


# Tried in order: "a package for X" before "search X", so the lead words stay out of X.
_QUERY_LEADS = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"^(?:is\s+|does\s+)?(?:there\s+)?(?:an?\s+)?(?!what\b|which\b)(.+?)\s+"
    r"(?:available|exists?)\b(?!\s+for)",
    r"^(?:est-ce que\s+)?(.+?)\s+(?:est-il|existe-t-il|est|existe)\s+(?:disponible|en paquet)",
    r"\b(?:gives?|offers?|propose|proposent|fournit)\s+(?:me\s+)?(.+)$",
    r"\blook\s+up\s+(.+)$",
    r"\bpackages?\s+(?:for|providing|that provides?|with|matching|related to|about|called|"
    r"named)\s+(.+)$",
    r"\bpaquets?\s+(?:correspondant [àa]|li[ée]s [àa]|appel[ée]s?|nomm[ée]s?)\s+(.+)$",
    r"\bpaquets?\s+(?:pour|de|d'|qui fourni\w*)\s*(.+)$",
    r"\bpackages?\s+(?:provide|offer)s?\s+(.+)$",
    r"\bpaquets?\s+(?:fourni\w*)\s+(.+)$",
    r"\b(?:search|look|looking|hunt)(?:\s+(?:the\s+)?(?:repositor(?:y|ies)|repos?|packages?))?"
    r"\s+for\s+(.+)$",
    r"\b(?:available|exists?)\s+for\s+(.+)$",
    r"\bdo you have\s+(.+)$",
    r"\bpaquets?\s+(?!pour\b|de\b)(.+)$",
    r"\b(?:re)?cherche[rz]?\s+(.+)$",
    r"\b(?:search|find|trouve)\s+(.+)$",
))
_QUERY_TAIL = re.compile(
    r"\s*(?:\b(?:in|dans)\s+(?:the|le|les)\s+(?:repo\w*|d[ée]p[ôo]ts?|paquets|packages)\b|"
    r"\bpackages?\b|\bpaquets?\b|\bin the repositor(?:y|ies)\b|\bdans les d[ée]p[ôo]ts\b|"
    r"\bon the repos?\b|\bplease\b|\bs'il te pla[iî]t\b|[?!.])\s*$", re.IGNORECASE)
_QUERY_ARTICLE = re.compile(r"^(?:(?:an?|the|some|un|une|des|de|du|le|la|les)\s+|d'\s*)+",
                            re.IGNORECASE)


def _query(text: str) -> str | None:
    match = next((m for m in (lead.search(text) for lead in _QUERY_LEADS) if m), None)
    if not match:
        return None
    query = match.group(1).strip()
    for _ in range(4):
        trimmed = _QUERY_TAIL.sub("", query).strip()
        trimmed = _QUERY_ARTICLE.sub("", trimmed).strip()
        if trimmed == query:
            break
        query = trimmed
    return query.strip(" \"'").lower() or None


def extract(intent: str, text: str, installed_modules: Sequence[str] = ()) -> dict[str, str]:
    """The slots of ``intent`` found in ``text`` (absent ones are left out)."""
    slots: dict[str, str | None] = {}
    if intent == "proc.kill":
        slots["target"] = _target(text, _KILL_VERBS)
    elif intent == "pkg.install":
        slots["package"] = _package(text, _INSTALL_VERBS)
    elif intent == "pkg.remove":
        slots["package"] = _package(text, _REMOVE_VERBS)
    elif intent == "pkg.upgrade":
        slots["package"] = _package(text, _UPGRADE_VERBS)
    elif intent == "pkg.search":
        slots["query"] = _query(text)
    elif intent in ("module.upgrade", "module.rollback"):
        slots["module"] = resolve_module(text, installed_modules)
        if intent == "module.upgrade":
            slots["version"] = _version(text)
    elif intent in ("cap.list", "cap.revoke"):
        slots["target"] = _target(text, _TARGET_TRIGGERS)
        if intent == "cap.revoke":
            _, uris = _strip_uris(text)
            slots["capability"] = uris[0] if uris else None
    elif intent == "fs.find":
        slots["name"] = _file_name(text)
    return {k: v for k, v in slots.items() if v}
