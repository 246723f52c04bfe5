"""The assistant: one sentence in, one answer out, signed by the agent that gave it.

``answer(sentence)`` parses the sentence into a catalogue intent (``exo.agents.intent``,
loaded when first needed), asks back when the parser is not sure, and otherwise acts
through the subsystem that owns the intent: AI-Res over its encrypted ``agent://ai-res``
channel for resource questions, the kernel's API for processes and capabilities, the
power profiles of AI-Res, the ``exo`` commands for packages, modules and security.

When the parser hesitates between two intents, the answer is a question naming them
(``exo.agents.askback``) that a :class:`Conversation` (the shell keeps one) lets the next
reply ("1", "2", "yes") settle. Module phrases ("the network driver") resolve against the
kernel's loaded modules, which the assistant hands to the parser.

It holds an attenuated set of capabilities (``HOLDS``): what it may use at all, further
bounded by the session it answers for (``Context.holds``). Destructive intents (the
catalogue's ``destructive`` rows: kill, remove, revoke, shutdown) need a ``confirm``
callback to say yes; without one, or on no, nothing happens. Where a subsystem cannot be
reached from here, the answer says so: it never invents a result.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exo.agents.askback import Question, question_for
from exo.agents.intents import BY_NAME, CATALOGUE, Intent

DEFAULT_THRESHOLD = 0.6
#: What the assistant may use at all, whatever the session holds (attenuation).
HOLDS: tuple[tuple[str, str], ...] = (
    ("agent://ai-res", "SEND"),
    ("process://*", "SEND"),
    ("device://power", "WRITE"),
    ("storage://", "READ"),
    ("module://*", "WRITE"),
)
#: Not destructive (the catalogue's word), but they change a running driver: the
#: assistant asks first, naming the module a phrase resolved to.
CONFIRM_ALSO = frozenset({"module.upgrade", "module.rollback"})
AUDIT_LOG = "storage://var/log/audit.jsonl"  # what the shell's `caps --audit` needs
CLI_TIMEOUT_S = 300.0
FIND_LIMIT = 20
FIND_SCAN = 50_000

Confirm = Callable[[str], bool]
Parse = Callable[[str], Intent]


@dataclass(slots=True)
class Answer:
    text: str
    agent: str = "Assistant"
    intent: str = "unknown"
    lang: str = "en"
    ok: bool = True
    question: bool = False  # the assistant asks back instead of acting
    done: bool = False  # something was changed
    data: Any = None
    slots: dict[str, str] = field(default_factory=dict)
    followup: Question | None = None  # the question asked back, for the next reply

    def line(self) -> str:
        return "\n".join(f"[{self.agent}] {ln}" if i == 0 else ln
                         for i, ln in enumerate(self.text.splitlines() or [""]))

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "intent": self.intent, "slots": self.slots,
                "lang": self.lang, "ok": self.ok, "question": self.question,
                "done": self.done, "text": self.text,
                "choices": list(self.followup.choices) if self.followup else []}


class Context:
    """What the assistant can reach: nothing (on the host, no kernel), or a booted
    kernel's API, its agents and a session (in the Exo shell)."""

    def __init__(self, *, api: Any = None, agents: Any = None, session: Any = None,
                 root: Path | None = None) -> None:
        self.api = api  # exo.kernel.api.KernelApi
        self.agents = agents  # exo.agents.subsystem.Agents
        self.session = session  # exo.shell.session.Session (None: not bounded by one)
        self.root = root if root is not None else (api.root if api is not None else None)

    def holds(self, name: str, rights: str) -> bool:
        """The assistant's own set, narrowed by the session's."""
        from exo.kernel.caps import ResourceName, Rights

        try:
            want, wanted = ResourceName.parse(name), Rights.parse(rights)
        except ValueError:
            return False
        mine = any(ResourceName.parse(n).covers(want) and wanted in Rights.parse(r)
                   for n, r in HOLDS)
        return mine and (self.session is None or bool(self.session.holds(name, rights)))

    def modules(self) -> Any:
        """The kernel's module manager, when this context has a booted kernel's agents."""
        finder = getattr(self.agents, "modules", None)
        return finder() if callable(finder) else None

    def module_paths(self) -> list[str]:
        """The loaded modules' paths (``net/loop`` for ``device://net/loop``), for the
        parser to resolve "the network driver" to; empty when no kernel is here."""
        manager = self.modules()
        if manager is None:
            return []
        try:
            rows = manager.list()
        except Exception:  # stopping under us: the alias table will do
            return []
        return [str(r["service"]).split("://", 1)[-1] for r in rows]


def _t(lang: str, en: str, fr: str) -> str:
    return fr if lang == "fr" else en


def answer(sentence: str, *, parse: Parse | None = None, confirm: Confirm | None = None,
           lang: str | None = None, context: Context | None = None,
           threshold: float | None = None) -> Answer:
    """Answer one sentence (see the module doc). ``lang`` overrides the language the
    parser detected; ``context`` is what the assistant may act on."""
    sentence = sentence.strip()[:2000]
    if parse is None:
        from exo.agents.intent import CONFIDENCE_THRESHOLD, default_parser

        intent = _with_modules(default_parser().parse(sentence), sentence, context)
        threshold = CONFIDENCE_THRESHOLD if threshold is None else threshold
    else:
        intent = parse(sentence)
    asked = question_for(intent, sentence)
    if asked is not None:
        lg = lang or asked.lang
        if lang and lang != asked.lang:
            asked = Question(asked.sentence, asked.choices, lang)
        return Answer(asked.text(), intent=intent.name, lang=lg, question=True,
                      slots=dict(intent.slots), followup=asked)
    return act(intent, confirm=confirm, lang=lang, context=context,
               threshold=DEFAULT_THRESHOLD if threshold is None else threshold)


def _with_modules(intent: Intent, sentence: str, context: Context | None) -> Intent:
    """A module intent's slots found again against the kernel's loaded modules ("the
    network driver" -> the loaded net/… module). Asked only for module intents: listing
    the modules checks each one's health."""
    if intent.name not in ("module.upgrade", "module.rollback") or context is None:
        return intent
    paths = context.module_paths()
    if not paths:
        return intent
    from exo.agents.intent.slots import extract

    return dataclasses.replace(intent, slots=extract(intent.name, sentence, paths))


class Conversation:
    """The assistant across replies: keeps the last question asked back, so "1", "2" or
    "yes" picks one of its choices and "no" drops it. One per shell; not thread-safe
    (a shell runs one ``ai`` at a time)."""

    def __init__(self) -> None:
        self.pending: Question | None = None

    def answer(self, sentence: str, *, confirm: Confirm | None = None,
               lang: str | None = None, context: Context | None = None) -> Answer:
        pending, self.pending = self.pending, None
        if pending is not None:
            picked = pending.pick(sentence)
            if picked is False:
                lg = lang or pending.lang
                return Answer(_t(lg, "OK, nothing done.", "D'accord, rien n'a été fait."),
                              intent="unknown", lang=lg)
            if isinstance(picked, Intent):
                picked = _with_modules(picked, pending.sentence, context)
                return act(picked, confirm=confirm, lang=lang, context=context)
        result = answer(sentence, confirm=confirm, lang=lang, context=context)
        self.pending = result.followup
        return result


def act(intent: Intent, *, confirm: Confirm | None = None, lang: str | None = None,
        context: Context | None = None, threshold: float = DEFAULT_THRESHOLD) -> Answer:
    """Carry out a parsed intent (the second half of ``answer``)."""
    lg = lang or intent.lang or "en"
    ctx = context or Context()
    spec = BY_NAME.get(intent.name)
    if spec is None or intent.name == "unknown":
        return _help(lg, intent.name, understood=False)
    if intent.name == "help":
        return _help(lg, "help", understood=True)
    if intent.confidence < threshold:
        return Answer(_t(lg, f"Did you mean: {spec.summary}? Please rephrase to confirm.",
                         f"Voulez-vous dire : {spec.summary} ? Reformulez pour confirmer."),
                      intent=intent.name, lang=lg, question=True, slots=dict(intent.slots))
    missing = [s for s in spec.slots if not intent.slots.get(s)]
    if missing:
        return Answer(_t(lg, f"{intent.name} needs: {', '.join(missing)}",
                         f"{intent.name} a besoin de : {', '.join(missing)}"),
                      intent=intent.name, lang=lg, question=True, slots=dict(intent.slots))
    if spec.destructive or intent.name in CONFIRM_ALSO:
        what = _describe(intent, lg)
        if confirm is None or not confirm(what):
            return Answer(_t(lg, f"Cancelled: {what} was not done.",
                             f"Annulé : {what} n'a pas été fait."),
                          intent=intent.name, lang=lg, ok=False, slots=dict(intent.slots))
    handler = _HANDLERS[intent.name.split(".")[0]]
    try:
        result = handler(intent, ctx, lg)
    except Exception as exc:
        result = Answer(f"{type(exc).__name__}: {exc}", ok=False)
    result.intent, result.lang, result.slots = intent.name, lg, dict(intent.slots)
    return result


def _describe(intent: Intent, lang: str) -> str:
    s = intent.slots
    return {
        "proc.kill": _t(lang, f"stop process {s.get('target')}",
                        f"arrêter le processus {s.get('target')}"),
        "pkg.remove": _t(lang, f"remove package {s.get('package')}",
                         f"supprimer le paquet {s.get('package')}"),
        "cap.revoke": _t(lang, f"revoke {s.get('capability') or 'the capabilities'} of "
                               f"{s.get('target')}",
                         f"révoquer {s.get('capability') or 'les capacités'} de "
                         f"{s.get('target')}"),
        "sys.shutdown": _t(lang, "shut Exo-OS down", "arrêter Exo-OS"),
        "module.upgrade": _t(lang, f"upgrade module {s.get('module')}"
                                   + (f" to {s['version']}" if s.get("version") else
                                      " to its newest kept version"),
                             f"mettre à jour le module {s.get('module')}"
                             + (f" en {s['version']}" if s.get("version") else
                                " vers sa dernière version gardée")),
        "module.rollback": _t(lang, f"roll module {s.get('module')} back",
                              f"ramener le module {s.get('module')} à sa version "
                              "précédente"),
    }.get(intent.name, intent.name)


def _help(lang: str, name: str, *, understood: bool) -> Answer:
    rows = [f"  {s.name:<18} {s.summary}" for s in CATALOGUE
            if s.name not in ("help", "unknown")]
    head = (_t(lang, "I can:", "Je sais :") if understood else
            _t(lang, "I did not understand. I can:", "Je n'ai pas compris. Je sais :"))
    return Answer("\n".join([head, *rows]), intent=name, lang=lang, ok=understood)


def _refuse(lang: str, name: str, rights: str) -> Answer:
    return Answer(_t(lang, f"permission denied: this needs {name}={rights}, which the "
                           "assistant does not hold for this session",
                     f"permission refusée : il faut {name}={rights}, que l'assistant ne "
                     "détient pas pour cette session"), ok=False)


# ------------------------------------------------------------------ AI-Res


def _sys(intent: Intent, ctx: Context, lang: str) -> Answer:
    if intent.name == "sys.shutdown":
        return _shutdown(ctx, lang)
    return _ask_res(intent, ctx, lang)


def _ask_res(intent: Intent, ctx: Context, lang: str) -> Answer:
    """A resource question, through the AI-Res agent when a kernel runs it; answered by
    AI-Res's own code in this process otherwise (on the host, no kernel)."""
    from exo.agents import res

    if ctx.agents is None and ctx.api is not None:
        return Answer(_t(lang, "the AI agents are not running in this kernel (dmesg says "
                               "why)", "les agents IA ne tournent pas dans ce noyau (dmesg "
                               "dit pourquoi)"), agent=res.LABEL, ok=False)
    if ctx.agents is None:
        monitor = res.ResourceMonitor(None, ctx.root or Path("/"), _version())
        snap = monitor.snapshot()
        return Answer(res.answer_text(intent.name, snap, lang), agent=res.LABEL,
                      data={"via": "local"})
    if not ctx.holds("agent://ai-res", "SEND"):
        return _refuse(lang, "agent://ai-res", "SEND")
    reply = ctx.agents.ask("ai-res", {"intent": intent.name, "lang": lang,
                                      "slots": dict(intent.slots)})
    return Answer(str(reply.get("text") or reply.get("error") or ""),
                  agent=str(reply.get("agent") or res.LABEL), ok=bool(reply.get("ok")),
                  data={"via": "agent://ai-res"})


def _proc(intent: Intent, ctx: Context, lang: str) -> Answer:
    if intent.name != "proc.kill":
        return _ask_res(intent, ctx, lang)
    if ctx.api is None:
        return Answer(_t(lang, "no Exo kernel here: stopping a process needs the shell of "
                               "a booted Exo-OS", "pas de noyau Exo ici : arrêter un "
                               "processus demande le shell d'un Exo-OS démarré"), ok=False)
    target = intent.slots["target"].strip()
    rows = [r for r in ctx.api.ps() if r["state"] != "exited" and int(r["pid"]) != 1]
    if target.isdigit():
        matches = [r for r in rows if int(r["pid"]) == int(target)]
    else:
        matches = [r for r in rows if os.path.basename(str(r["command"]).split(" ")[0])
                   == target or target in str(r["command"]).split(" ")[:3]]
    if not matches:
        return Answer(_t(lang, f"no Exo process {target!r}", f"aucun processus Exo "
                                                              f"{target!r}"), ok=False)
    if len(matches) > 1:
        pids = ", ".join(str(r["pid"]) for r in matches)
        return Answer(_t(lang, f"{target!r} names several processes ({pids}): give a pid",
                         f"{target!r} désigne plusieurs processus ({pids}) : donnez un pid"),
                      ok=False, question=True)
    pid = int(matches[0]["pid"])
    if not ctx.holds(f"process://{pid}", "SEND"):
        return _refuse(lang, f"process://{pid}", "SEND")
    ctx.api.kill(pid, signal.SIGTERM)
    return Answer(_t(lang, f"sent SIGTERM to process {pid} ({matches[0]['command'][:60]})",
                     f"SIGTERM envoyé au processus {pid} ({matches[0]['command'][:60]})"),
                  agent="AI-Core", done=True)


def _power(intent: Intent, ctx: Context, lang: str) -> Answer:
    from exo.agents.power import BY_INTENT

    if ctx.agents is None:
        return Answer(_t(lang, "no Exo kernel here: power profiles apply to a booted "
                               "Exo-OS's cgroup tree", "pas de noyau Exo ici : les profils "
                               "d'énergie s'appliquent à un Exo-OS démarré"),
                      agent="AI-Res", ok=False)
    if not ctx.holds("device://power", "WRITE"):
        return _refuse(lang, "device://power", "WRITE")
    report = ctx.agents.power_profile(BY_INTENT[intent.name])
    lines = report.lines(lang)
    eff = report.effect
    if "before_s" in eff:
        lines.append(_t(lang, f"  measured: the Exo tree got {eff['before_s']:.2f} s of CPU "
                              f"in 1 s before, {eff['after_s']:.2f} s after",
                        f"  mesuré : l'arbre Exo a eu {eff['before_s']:.2f} s de CPU en "
                        f"1 s avant, {eff['after_s']:.2f} s après"))
    return Answer("\n".join(lines), agent="AI-Res", done=bool(report.changes),
                  data={"changes": [{"path": c.path, "before": c.before, "after": c.after}
                                    for c in report.changes], "effect": eff})


def _shutdown(ctx: Context, lang: str) -> Answer:
    if ctx.api is None:
        return Answer(_t(lang, "no Exo kernel here to shut down", "pas de noyau Exo ici"),
                      ok=False)
    if not ctx.holds("device://power", "WRITE"):
        return _refuse(lang, "device://power", "WRITE")
    ctx.api.request_shutdown()
    return Answer(_t(lang, "shutting Exo-OS down", "arrêt d'Exo-OS"), agent="AI-Core",
                  done=True)


# ------------------------------------------------------------------ the exo commands


def _exo(ctx: Context, args: list[str]) -> tuple[int, str]:
    """Run an ``exo`` command (the same one a user types) on this Exo root."""
    env = dict(os.environ)
    if ctx.root is not None:
        env["EXO_ROOT"] = str(ctx.root)
    try:
        done = subprocess.run([sys.executable, "-m", "exo", *args], capture_output=True,
                              text=True, timeout=CLI_TIMEOUT_S, env=env, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 1, f"exo {' '.join(args)}: no answer within {CLI_TIMEOUT_S:g} s"
    out = (done.stdout + done.stderr).strip()
    return done.returncode, out[-4000:]


def _admin(ctx: Context, lang: str) -> Answer | None:
    """Packages and modules change the whole system: the administrator's session only."""
    if ctx.session is not None and ctx.session.grants is not None:
        return Answer(_t(lang, f"permission denied: only the administrator manages "
                               f"packages and modules (user {ctx.session.user})",
                         f"permission refusée : seul l'administrateur gère les paquets et "
                         f"les modules (utilisateur {ctx.session.user})"), ok=False)
    return None


def _pkg(intent: Intent, ctx: Context, lang: str) -> Answer:
    refused = _admin(ctx, lang)
    if refused is not None:
        return refused
    s = intent.slots
    args = {"pkg.install": ["install", s.get("package", ""), "--yes"],
            "pkg.remove": ["remove", s.get("package", ""), "--yes"],
            "pkg.upgrade": ["upgrade", *([s["package"]] if s.get("package") else []), "--yes"],
            "pkg.search": ["search", s.get("query", "")]}[intent.name]
    status, out = _exo(ctx, args)
    return Answer(out or f"exo {' '.join(args)}: exit {status}", agent="Packages",
                  ok=status == 0, done=status == 0 and intent.name != "pkg.search")


def _module(intent: Intent, ctx: Context, lang: str) -> Answer:
    refused = _admin(ctx, lang)
    if refused is not None:
        return refused
    manager = ctx.modules()
    if manager is not None:
        return _module_manager(manager, intent, ctx, lang)
    s = intent.slots
    if intent.name == "module.list":
        args = ["module", "list"]
    elif intent.name == "module.upgrade":
        args = ["module", "upgrade", s["module"], *(["--version", s["version"]]
                                                    if s.get("version") else [])]
    else:
        args = ["module", "rollback", s["module"]]
    status, out = _exo(ctx, args)
    return Answer(out or f"exo {' '.join(args)}: exit {status}", agent="Modules",
                  ok=status == 0, done=status == 0 and intent.name != "module.list")


def _module_manager(manager: Any, intent: Intent, ctx: Context, lang: str) -> Answer:
    """In a booted kernel: straight through its module manager (exo.modules.manager)."""
    from exo.modules import ModuleError

    s = intent.slots
    if intent.name == "module.list":
        rows = manager.list()
        if not rows:
            return Answer(_t(lang, "no modules loaded", "aucun module chargé"),
                          agent="Modules", data=[])
        lines = [_t(lang, f"{len(rows)} modules loaded:", f"{len(rows)} modules chargés :")]
        for r in rows:
            versions = ", ".join(f"{v['version']} ({v['traffic']}%, {v['health']})"
                                 for v in r["versions"])
            lines.append(f"  {str(r['service']).split('://', 1)[-1]:<14} {r['name']:<14} "
                         f"{versions}")
        return Answer("\n".join(lines), agent="Modules", data=rows)
    path = s["module"]
    if not ctx.holds(f"module://{path}", "WRITE"):
        return _refuse(lang, f"module://{path}", "WRITE")
    try:
        if intent.name == "module.upgrade":
            version = s.get("version") or _newest_kept(manager, ctx, path, lang)
            result = manager.upgrade(path, version)
        else:
            result = manager.rollback(path)
    except ModuleError as exc:
        return Answer(str(exc), agent="Modules", ok=False)
    rolled = result.get("rolled_back")
    return Answer(str(result["message"]), agent="Modules", ok=not rolled, done=True,
                  data=result)


def _newest_kept(manager: Any, ctx: Context, path: str, lang: str) -> str:
    """The newest version of a loaded module kept in the store (what "upgrade the
    network driver" without a version means)."""
    from exo.modules import ModuleError, package

    svc = manager.service_named(path)
    if ctx.root is None:
        raise ModuleError(f"{path}: give a version")
    newest = package.find(Path(ctx.root), svc.name)
    version = newest.name[len(svc.name) + 1:-len(".exopkg")]
    if version == svc.stable:
        raise ModuleError(_t(lang, f"{path} is already at its newest kept version "
                                         f"{version}", f"{path} est déjà à sa dernière "
                                                        f"version gardée {version}"))
    return version


def _sec(intent: Intent, ctx: Context, lang: str) -> Answer:
    if intent.name == "sec.status":
        status, out = _exo(ctx, ["tpm", "status"])
        return Answer(out, agent="Security", ok=status == 0)
    if ctx.api is None:
        return Answer(_t(lang, "no Exo kernel here: the audit log is the kernel's",
                         "pas de noyau Exo ici : le journal d'audit est celui du noyau"),
                      agent="Security", ok=False)
    if ctx.session is not None and not ctx.session.holds(AUDIT_LOG, "READ"):
        return _refuse(lang, AUDIT_LOG, "READ")
    rows = ctx.api.audit(limit=10)
    lines = [f"{r.get('event', '?'):<8} pid {r.get('pid', '-')} {r.get('resource') or ''} "
             f"{r.get('reason') or ''}".rstrip() for r in rows]
    head = _t(lang, f"last {len(rows)} audit records:", f"{len(rows)} derniers "
                                                         "enregistrements d'audit :")
    return Answer("\n".join([head, *lines]), agent="Security", data=rows)


def _cap(intent: Intent, ctx: Context, lang: str) -> Answer:
    if ctx.api is None:
        return Answer(_t(lang, "no Exo kernel here: capabilities live in a booted kernel",
                         "pas de noyau Exo ici : les capacités vivent dans un noyau "
                         "démarré"), ok=False)
    target = intent.slots.get("target", "").strip()
    pid = int(target) if target.isdigit() else None
    if target and pid is None:
        return Answer(_t(lang, f"{target!r}: give a process id", f"{target!r} : donnez un "
                                                                  "numéro de processus"),
                      ok=False, question=True)
    if intent.name == "cap.list":
        rows = ctx.api.caps(pid)
        lines = [f"  {r['pid']:>5} {r['handle']} {r['resource']} {r['rights']}" for r in rows]
        return Answer("\n".join([_t(lang, f"{len(rows)} capabilities:",
                                    f"{len(rows)} capacités :"), *lines]),
                      agent="AI-Core", data=rows)
    if ctx.session is not None and ctx.session.grants is not None:
        return Answer(_t(lang, "permission denied: only the administrator revokes another "
                               "process's capabilities", "permission refusée : seul "
                               "l'administrateur révoque les capacités d'un autre "
                               "processus"), ok=False)
    if ctx.agents is None or pid is None:
        return Answer(_t(lang, "cap.revoke needs a booted kernel and a process id",
                         "cap.revoke demande un noyau démarré et un numéro de processus"),
                      ok=False)
    count = ctx.agents.revoke(pid, intent.slots.get("capability") or None)
    return Answer(_t(lang, f"revoked {count} capabilities of process {pid}",
                     f"{count} capacités du processus {pid} révoquées"),
                  agent="AI-Core", done=count > 0)


def _net(intent: Intent, ctx: Context, lang: str) -> Answer:
    import psutil

    stats = psutil.net_if_stats()
    counters = psutil.net_io_counters(pernic=True)
    lines = []
    for nic, st in sorted(stats.items()):
        c = counters.get(nic)
        io = f", rx {c.bytes_recv} B, tx {c.bytes_sent} B" if c is not None else ""
        lines.append(f"  {nic}: {'up' if st.isup else 'down'}{io}")
    head = _t(lang, "host network interfaces (an Exo process gets the host network or "
                    "none, per capability):", "interfaces réseau de l'hôte (un processus Exo "
                    "a le réseau de l'hôte ou aucun, selon ses capacités) :")
    lines.extend(_net_modules(ctx, lang))
    return Answer("\n".join([head, *lines]), agent="Net")


def _net_modules(ctx: Context, lang: str) -> list[str]:
    """The loaded network driver modules (net/loop: a TAP in the Exo network namespace)."""
    manager = ctx.modules()
    rows = [r for r in (manager.list() if manager is not None else [])
            if str(r["service"]).startswith("device://net/")]
    if not rows:
        return [_t(lang, "  no Exo network driver module loaded (exo module load net-loop)",
                   "  aucun module pilote réseau Exo chargé (exo module load net-loop)")]
    out = []
    for r in rows:
        device = r.get("device") or {}
        where = ", ".join(f"{k} {device[k]}" for k in ("interface", "address") if k in device)
        out.append(f"  {r['service']}: {r['name']} {r['stable']}" + (f" ({where})" if where
                                                                      else ""))
    return out


def _fs(intent: Intent, ctx: Context, lang: str) -> Answer:
    name = intent.slots["name"].strip()
    if ctx.root is None or not name or "/" in name:
        return Answer(_t(lang, "fs.find needs a file name (no '/') and an Exo tree",
                         "fs.find demande un nom de fichier (sans '/') et un arbre Exo"),
                      ok=False)
    import fnmatch

    root = Path(ctx.root)
    found: list[str] = []
    scanned = 0
    for dirpath, dirnames, filenames in os.walk(root):
        rel = "/" if dirpath == str(root) else "/" + os.path.relpath(dirpath, root)
        if rel in ("/proc", "/sys") or rel.startswith("/var/run"):
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if ctx.holds(
            "storage://" + (rel.strip("/") + "/" + d).strip("/"), "READ") or
            _on_the_way(ctx, (rel.rstrip("/") + "/" + d))]
        for f in filenames:
            path = rel.rstrip("/") + "/" + f
            if fnmatch.fnmatch(f, name) and ctx.holds("storage://" + path.strip("/"), "READ"):
                found.append(path)
        scanned += len(filenames) + len(dirnames)
        if len(found) >= FIND_LIMIT or scanned >= FIND_SCAN:
            break
    if not found:
        return Answer(_t(lang, f"no file named {name!r} that you may read",
                         f"aucun fichier nommé {name!r} que vous pouvez lire"), agent="Files")
    return Answer("\n".join([_t(lang, f"{len(found)} found:", f"{len(found)} trouvés :"),
                             *(f"  {p}" for p in found)]), agent="Files", data=found)


def _on_the_way(ctx: Context, exo_path: str) -> bool:
    """Whether a directory leads to something the session may read."""
    if ctx.session is None or ctx.session.grants is None:
        return True
    prefix = exo_path.rstrip("/") + "/"
    return any(g.name.scheme == "storage" and ("/" + g.name.path).startswith(prefix)
               for g in ctx.session.grants)


def _version() -> str:
    from exo import __version__

    return __version__


_HANDLERS: dict[str, Callable[[Intent, Context, str], Answer]] = {
    "sys": _sys, "proc": _proc, "power": _power, "pkg": _pkg, "module": _module,
    "cap": _cap, "sec": _sec, "net": _net, "fs": _fs,
}

__all__ = ["HOLDS", "Answer", "Context", "Conversation", "act", "answer"]
