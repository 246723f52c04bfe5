"""AI-Res: what the system's resources are doing, and answers about them.

Two halves, because an agent is sandboxed: inside its own pid namespace it cannot see
other processes. ``ResourceMonitor`` runs in the kernel (the DEFERRED "AI agents" step):
every second it samples the host (psutil) and each Exo process's cgroup — CPU, resident
memory, I/O — and keeps per process an exponential moving average with the predictive
scheduler's α (``exo.sched.predict.ALPHA``), so its classes (hot / normal / cold) read
the same way as the scheduler's; ``stats()`` is what placement uses, ``/proc/ai-res``
shows it: after each sample the monitor hands them to Eco++ placement
(``exo.sched.placement.Placer``), so one sampler measures processes for both.
``handle`` runs in the AI-Res agent's process: it asks the kernel for a snapshot
(the only service it may use) and answers one question in the language asked.
``answer_text`` is the formatting both halves share.
"""

from __future__ import annotations

import contextlib
import os
import platform
import threading
import time
from typing import Any

from exo.sched.predict import ALPHA

INTENTS = ("sys.cpu_usage", "sys.memory_usage", "sys.disk_usage", "sys.info", "proc.list",
           "proc.top_cpu", "proc.top_memory")
LABEL = "AI-Res"
INTERVAL_S = 1.0
TOP = 5
HOT_PCT, COLD_PCT = 5.0, 50.0  # CPU EMA: below HOT mostly waiting, above COLD CPU-bound


class _Track:
    """One Exo process's last raw sample and its moving averages."""

    __slots__ = ("cpu", "cpu_ema", "cpu_s", "demand", "demand_ema", "demand_s", "io", "io_ema",
                 "rates", "rss", "rss_ema", "t")

    def __init__(self) -> None:
        self.t = 0.0
        self.rates = 0  # samples with a rate (CPU, I/O): one fewer than samples taken
        self.cpu_s = 0.0
        self.demand_s = 0.0  # seconds on a CPU or waiting for one (schedstat)
        self.demand = self.demand_ema = 0.0
        self.io = 0
        self.cpu = self.cpu_ema = 0.0
        self.rss = 0
        self.rss_ema = 0.0
        self.io_ema = 0.0


def _ema(old: float, new: float, first: bool) -> float:
    return new if first else ALPHA * new + (1 - ALPHA) * old


def klass(cpu_ema: float) -> str:
    """The scheduler's class names for a process's CPU share (see the module doc)."""
    return "hot" if cpu_ema < HOT_PCT else "normal" if cpu_ema < COLD_PCT else "cold"


class ResourceMonitor:
    """Samples the host and every live Exo process; thread-safe snapshots."""

    def __init__(self, processes: Any, root: Any, version: str = "",
                 interval: float = INTERVAL_S) -> None:
        self.processes = processes  # exo.kernel.process.ProcessManager (or None)
        self.root = root
        self.version = version
        self.interval = interval
        self._tracks: dict[int, _Track] = {}
        self._cores: list[float] = []
        self._lock = threading.Lock()
        self._service: Any = None  # exo.sched.services.Periodic, from start()
        self.placer: Any = None  # exo.sched.placement.Placer, from start()

    def start(self) -> None:
        import psutil

        psutil.cpu_percent(percpu=True)  # the first call only sets the reference
        boot_id = getattr(self.processes, "boot_id", None)
        if isinstance(boot_id, str):
            from exo.sched.placement import Placer

            self.placer = Placer(boot_id, processes=self.processes)
            self.placer.register()
        from exo.sched.services import Periodic

        # an Exo task on the kernel's scheduler thread (a thread of its own outside a
        # kernel): a few ms of /proc reads a second, asleep in the scheduler's timer between
        self._service = Periodic(self._tick, self.interval, "exo-ai-res",
                                 boot_id=boot_id if isinstance(boot_id, str) else None)
        self._service.start()

    @property
    def service(self) -> Any:
        """The ``exo.sched.services.Periodic`` sampling (None before ``start``)."""
        return self._service

    def stop(self) -> None:
        if self._service is not None:
            self._service.stop(5)
            self._service = None
        if self.placer is not None:
            self.placer.unregister()

    def _tick(self) -> None:
        # a process vanishing mid-sample: the next sample is fine
        with contextlib.suppress(Exception):
            self.sample()
            if self.placer is not None and self.processes is not None:
                self.placer.update(self.stats(), self.processes.live())

    def sample(self, *, cores: bool = True) -> None:
        """One sample of each live Exo process and (``cores``) of the host's CPUs: a
        second sample soon after the last would measure the CPUs over a few ms."""
        import psutil

        per_cpu = psutil.cpu_percent(percpu=True) if cores else None
        now = time.monotonic()
        live = self.processes.live() if self.processes is not None else []
        seen = set()
        for proc in live:
            seen.add(proc.pid)
            cpu_s, rss, io = _usage(proc)
            demand_s = _demand(proc)
            with self._lock:
                tr = self._tracks.get(proc.pid)
                first = tr is None
                if tr is None:
                    tr = self._tracks[proc.pid] = _Track()
                dt = now - tr.t if not first else 0.0
                if dt > 0:
                    tr.cpu = max(0.0, (cpu_s - tr.cpu_s) / dt * 100)
                    rate = max(0.0, (io - tr.io) / dt)
                    tr.cpu_ema = _ema(tr.cpu_ema, tr.cpu, tr.rates == 0)
                    tr.demand = max(0.0, (demand_s - tr.demand_s) / dt * 100)
                    tr.demand_ema = _ema(tr.demand_ema, tr.demand, tr.rates == 0)
                    tr.io_ema = _ema(tr.io_ema, rate, tr.rates == 0)
                    tr.rates += 1
                tr.rss = rss
                tr.rss_ema = _ema(tr.rss_ema, float(rss), first)
                tr.t, tr.cpu_s, tr.io, tr.demand_s = now, cpu_s, io, demand_s
        with self._lock:
            if per_cpu is not None:
                self._cores = list(per_cpu)
            for pid in [p for p in self._tracks if p not in seen]:
                del self._tracks[pid]

    def stats(self) -> dict[int, dict[str, Any]]:
        """Per Exo pid: CPU % (last second and EMA), RSS bytes (and EMA), I/O bytes/s EMA,
        CPU demand % EMA (running or runnable: a CPU-bound process that shares its CPU
        uses 50 % but wants 100 %), and the scheduler class the larger EMA implies."""
        with self._lock:
            return {pid: {"cpu": round(t.cpu, 1), "cpu_ema": round(t.cpu_ema, 1),
                          "rss": t.rss, "rss_ema": int(t.rss_ema),
                          "io_bps_ema": int(t.io_ema),
                          "demand_ema": round(t.demand_ema, 1),
                          "class": klass(max(t.cpu_ema, t.demand_ema)),
                          "samples": t.rates}
                    for pid, t in self._tracks.items()}

    def snapshot(self, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything AI-Res answers from, as JSON-ready data (the agent's service)."""
        import psutil

        with self._lock:
            cores = list(self._cores)
        if not cores:  # asked before the first sample: measure now, briefly
            cores = psutil.cpu_percent(interval=0.2, percpu=True)
        live = self.processes.live() if self.processes is not None else []
        with self._lock:
            unseen = any(p.pid not in self._tracks for p in live)
        if unseen:  # a process started since the last sample: its figures, now
            self.sample(cores=False)
        vm = psutil.virtual_memory()
        disk = psutil.disk_usage(str(self.root))
        stats = self.stats()
        rows = self.processes.rows() if self.processes is not None else []
        procs = []
        for row in rows:
            pid = int(row["pid"])
            if row.get("state") == "exited":
                continue
            procs.append({"pid": pid, "command": str(row["command"])[:200],
                          "state": row["state"], **stats.get(pid, {})})
        return {
            "cpu": {"percent": round(sum(cores) / len(cores), 1) if cores else 0.0,
                    "cores": [round(c, 1) for c in cores]},
            "memory": {"total": vm.total, "used": vm.total - vm.available,
                       "available": vm.available, "percent": round(vm.percent, 1)},
            "disk": {"path": "/", "total": disk.total, "used": disk.used,
                     "free": disk.free, "percent": round(disk.percent, 1)},
            "info": {"version": self.version, "machine": platform.machine(),
                     "cpus": psutil.cpu_count() or len(cores),
                     "memory_total": vm.total,
                     "uptime_s": round(time.time() - psutil.boot_time()),
                     "kernel_uptime_s": round(time.time() - psutil.Process().create_time())},
            "procs": procs,
        }

    def proc_text(self) -> str:
        """``/proc/ai-res``: one line per Exo process."""
        return "".join(f"{pid} cpu {s['cpu']}% ema {s['cpu_ema']}% rss {s['rss']} "
                       f"io {s['io_bps_ema']} B/s class {s['class']}\n"
                       for pid, s in sorted(self.stats().items()))


def _demand(proc: Any) -> float:
    """Seconds ``proc``'s sandbox spent on a CPU or runnable and waiting for one, summed
    over its threads: ``/proc/TID/schedstat`` (psutil does not read it) gives both."""
    total = 0
    for hp in _members(proc):
        try:
            tids = os.listdir(f"/proc/{hp}/task")[:1024]
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{hp}/task/{tid}/schedstat", "rb") as f:
                    run_ns, wait_ns = f.read().split()[:2]
                total += int(run_ns) + int(wait_ns)
            except (OSError, ValueError):
                continue
    return total / 1e9


def _members(proc: Any) -> set[int]:
    cgroup = getattr(getattr(proc, "sandbox", None), "cgroup", None)
    try:
        pids = cgroup.members() if cgroup is not None else {proc.host_pid}
    except OSError:
        pids = {proc.host_pid}
    return {p for p in pids if p > 0}


def _usage(proc: Any) -> tuple[float, int, int]:
    """CPU seconds, resident bytes, I/O bytes of every host process in ``proc``'s
    sandbox (its cgroup's members; its host pid without one)."""
    import psutil

    cgroup = getattr(getattr(proc, "sandbox", None), "cgroup", None)
    try:
        pids = cgroup.members() if cgroup is not None else {proc.host_pid}
    except OSError:
        pids = {proc.host_pid}
    cpu, rss, io = 0.0, 0, 0
    for hp in pids:
        if hp <= 0:
            continue
        try:
            p = psutil.Process(hp)
            with p.oneshot():
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
                try:
                    c = p.io_counters()
                    io += c.read_bytes + c.write_bytes
                except (psutil.AccessDenied, AttributeError):
                    pass
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return cpu, rss, io


# ------------------------------------------------------------------ answers


def _pct(value: float, lang: str) -> str:
    return f"{value:.0f} %" if lang == "fr" else f"{value:.0f}%"


def _size(n: float, lang: str) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB") if lang != "fr" else \
        ("o", "Kio", "Mio", "Gio", "Tio")
    v, i = float(n), 0
    while v >= 1024 and i < len(units) - 1:
        v, i = v / 1024, i + 1
    text = f"{v:.1f} {units[i]}"
    return text.replace(".", ",") if lang == "fr" else text


def _duration(s: float, lang: str) -> str:
    d, rem = divmod(int(s), 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    day = "j" if lang == "fr" else "d"
    return (f"{d} {day} " if d else "") + f"{h} h {m:02d} min"


def _cmd(command: str, width: int = 70) -> str:
    """A command line as a person reads it: the program's name, not its host path."""
    head, _, rest = command.replace("\\x0a", " ").partition(" ")
    text = f"{head.rsplit('/', 1)[-1]} {rest}".strip()
    return text if len(text) <= width else text[:width - 1] + "…"


def _used_of(words: tuple[str, str], usage: dict[str, Any], left: int, lang: str) -> str:
    """``Memory: 3.1 GB used of 7.8 GB (40 %), 4.7 GB available`` (``words``: the
    resource's name and what the rest is called), in ``lang``."""
    name, rest = words
    used, total = _size(usage["used"], lang), _size(usage["total"], lang)
    pct, left_text = _pct(usage["percent"], lang), _size(left, lang)
    if lang == "fr":
        return f"{name} : {used} utilisés sur {total} ({pct}), {left_text} {rest}"
    return f"{name}: {used} used of {total} ({pct}), {left_text} {rest}"


def answer_text(intent: str, snap: dict[str, Any], lang: str = "en") -> str:
    """One line (or a few) answering ``intent`` from a snapshot, in ``lang``."""
    fr = lang == "fr"
    if intent == "sys.cpu_usage":
        cpu = snap["cpu"]
        cores = ", ".join(_pct(c, lang) for c in cpu["cores"])
        if fr:
            return f"Utilisation CPU : {_pct(cpu['percent'], lang)} (moyenne), cœurs : [{cores}]"
        return f"CPU usage: {_pct(cpu['percent'], lang)} (avg), cores: [{cores}]"
    if intent == "sys.memory_usage":
        m = snap["memory"]
        return _used_of(("Mémoire", "disponibles") if fr else ("Memory", "available"),
                      m, m["available"], lang)
    if intent == "sys.disk_usage":
        d = snap["disk"]
        return _used_of(("Disque (/)", "libres") if fr else ("Disk (/)", "free"),
                      d, d["free"], lang)
    if intent == "sys.info":
        i = snap["info"]
        if fr:
            return (f"Exo-OS {i['version']} ({i['machine']}), {i['cpus']} CPU, "
                    f"{_size(i['memory_total'], lang)} de mémoire ; Exo-OS démarré depuis "
                    f"{_duration(i['kernel_uptime_s'], lang)}, hôte depuis "
                    f"{_duration(i['uptime_s'], lang)}")
        return (f"Exo-OS {i['version']} ({i['machine']}), {i['cpus']} CPUs, "
                f"{_size(i['memory_total'], lang)} memory; Exo-OS up "
                f"{_duration(i['kernel_uptime_s'], lang)}, host up "
                f"{_duration(i['uptime_s'], lang)}")
    procs = [p for p in snap["procs"] if p["pid"] != 1]
    if intent == "proc.list":
        head = (f"{len(procs)} processus Exo" if fr else
                f"{len(procs)} Exo process{'es' if len(procs) != 1 else ''}")
        lines = [f"  {p['pid']:>5} {p['state']:<8} {_cmd(p['command'])}" for p in procs]
        return "\n".join([head + (" :" if fr else ":") if lines else head, *lines])
    if intent in ("proc.top_cpu", "proc.top_memory"):
        key = "cpu_ema" if intent == "proc.top_cpu" else "rss"
        ranked = sorted(procs, key=lambda p: p.get(key, 0), reverse=True)[:TOP]
        if not ranked:
            return "Aucun processus Exo en cours" if fr else "No Exo process is running"
        if intent == "proc.top_cpu":
            head = "Processus les plus gourmands en CPU" if fr else "Top CPU"
            rows = [f"  {p['pid']:>5} {_pct(p.get('cpu', 0), lang)} "
                    f"({'moyenne' if fr else 'avg'} {_pct(p.get('cpu_ema', 0), lang)}, "
                    f"{p.get('class', '?')}) {_cmd(p['command'], 50)}" for p in ranked]
        else:
            head = "Processus les plus gourmands en mémoire" if fr else "Top memory"
            rows = [f"  {p['pid']:>5} {_size(p.get('rss', 0), lang)} {_cmd(p['command'], 50)}"
                    for p in ranked]
        return "\n".join([head + (" :" if fr else ":"), *rows])
    raise ValueError(f"AI-Res does not answer {intent!r}")


# ------------------------------------------------------------------ the agent


def _intent_of(request: dict[str, Any]) -> tuple[str, str]:
    """(intent, lang) of a request: a catalogue name, or a sentence for the intent
    engine when it is installed."""
    lang = str(request.get("lang") or "en")
    intent = request.get("intent")
    if isinstance(intent, str):
        return intent, lang
    text = request.get("text")
    if isinstance(text, str):
        import importlib

        try:
            parse = importlib.import_module("exo.agents.intent").parse
        except ImportError:
            return "unknown", lang
        parsed = parse(text[:2000])
        return str(parsed.name), str(getattr(parsed, "lang", lang) or lang)
    return "unknown", lang


def handle(request: dict[str, Any], kernel: Any) -> dict[str, Any]:
    """The AI-Res agent's handler (in its sandboxed process)."""
    intent, lang = _intent_of(request)
    if intent not in INTENTS:
        what = ", ".join(INTENTS)
        text = (f"AI-Res répond à : {what}" if lang == "fr" else f"AI-Res answers: {what}")
        return {"ok": False, "agent": LABEL, "error": text}
    snap = kernel.ask("snapshot", intent=intent)
    return {"ok": True, "agent": LABEL, "intent": intent, "lang": lang,
            "text": answer_text(intent, snap, lang),
            "data": snap if intent.startswith("proc.") else
            {k: snap[k] for k in ("cpu", "memory", "disk", "info")}}


__all__ = ["INTENTS", "ResourceMonitor", "answer_text", "handle", "klass"]
