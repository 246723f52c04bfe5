"""Benchmark: the AI-User intent engine (writes bench/results/ai.json).

Claims under test (issue 15): on French and English sentences written by someone else
(bench/data/ai-heldout-2.jsonl, never used for training nor seen while tuning) intent
accuracy >= 90 %, slot
accuracy >= 85 %, ``unknown`` recognised; parse p95 < 200 ms warm and < 2 s cold;
resident memory < 500 MB; all offline.

* ``intent_accuracy``: share of held-out lines whose intent is the gold one (``unknown``
  included); ``intent_accuracy_by_lang``; ``heldout_lines``;
* ``slot_accuracy``: share of held-out lines with gold slots whose parsed slots are exactly
  the gold ones (every key, every value); ``slot_accuracy_all_lines``: the same over all
  lines (no slot where none is expected counts too);
* ``unknown``: recall and precision of ``unknown``; ``confusion``: the most frequent
  (gold, parsed) pairs and every wrong line;
* ``p50_ms``/``p95_ms``/``p99_ms``: warm ``parse`` of each held-out line (5 rounds,
  interleaved with the scikit-learn peer's predict_proba of the same line);
  ``cold_ms``: a fresh interpreter importing exo.agents.intent and parsing one free-form
  sentence (model cached; median of 5); ``build_s``: training the model from nothing;
  ``rss_mb``: resident memory of a process that parsed every line;
* peers, measured in the same run: ``peer_sklearn`` (the same trained model served by
  scikit-learn's own Pipeline.predict_proba, unpickled: its cold start, p95 and RSS, and its
  accuracy, which must equal ours); ``peer_grammar_only`` (layer 1 alone: what the model
  adds); ``peer_python_rss_mb`` (a bare interpreter);
* ``own_heldout``: the project's own held-out templates (dataset.split), same metrics,
  plus ``asked_back`` (share of free-phrased lines the assistant would ask back about
  instead of acting: the parser's ``candidates``) and ``acted_accuracy`` (intent accuracy
  on the lines it would act on); ``own_cv``: 5-fold cross-validation over all of the
  project's examples, grouped by template (a template's expansions stay in one fold),
  the same metrics: how the thresholds were chosen, with less noise than one split;
* ``heldout_1``: the same accuracy figures on the first external set
  (bench/data/ai-heldout.jsonl). It is no longer a clean measure: four of its near-miss
  sentences were quoted into a work brief and became training sentences while ``unknown``
  recall was being improved. The top-level figures come from the second set, written later
  by another engineer who saw neither the training data nor the first set;
* ``voice``: espeak-ng -> WAV -> pocketsphinx (catalogue grammar) -> parse, on the
  English command forms: how many come back as the right intent.

Run: ``.venv/bin/python bench/ai.py [--quick]`` (quick: 1 warm round, 3 cold starts, no
voice). The JSON layout is a contract.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from exo.agents.intent import Parser, dataset  # noqa: E402
from exo.agents.intent.grammar import CommandGrammar  # noqa: E402
from exo.agents.intent.model import cache_path, load_or_train, sklearn_pipeline  # noqa: E402
from exo.agents.intents import BY_NAME  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ai.json"
HELDOUT = ROOT / "bench" / "data" / "ai-heldout-2.jsonl"
HELDOUT_1 = ROOT / "bench" / "data" / "ai-heldout.jsonl"
COLD_SENTENCE = "peux-tu me dire combien de mémoire est libre ?"

_COLD = """
import time, sys
t = time.perf_counter()
from exo.agents.intent import parse
parse(sys.argv[1])
print((time.perf_counter() - t) * 1000)
"""
_RSS = """
import json, sys, psutil
from exo.agents.intent import Parser
p = Parser()
for line in open(sys.argv[1], encoding="utf-8"):
    if line.strip():
        p.parse(json.loads(line)["text"])
print(psutil.Process().memory_info().rss / 2**20)
"""
_PEER_COLD = """
import pickle, time, sys
t = time.perf_counter()
with open(sys.argv[2], "rb") as fh:
    pipe = pickle.load(fh)
pipe.predict_proba([sys.argv[1]])
print((time.perf_counter() - t) * 1000)
"""
_PEER_RSS = """
import json, pickle, sys, psutil
with open(sys.argv[2], "rb") as fh:
    pipe = pickle.load(fh)
for line in open(sys.argv[1], encoding="utf-8"):
    if line.strip():
        pipe.predict_proba([json.loads(line)["text"]])
print(psutil.Process().memory_info().rss / 2**20)
"""
_BARE_RSS = "import psutil; print(psutil.Process().memory_info().rss / 2**20)"


def load_heldout(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("intent") not in BY_NAME or not isinstance(row.get("text"), str):
            raise SystemExit(f"{path}:{number}: not a held-out line: {line[:80]}")
        row.setdefault("slots", {})
        row.setdefault("lang", "en")
        rows.append(row)
    return rows


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> float:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=True, cwd=ROOT, env=env, timeout=600)
    return float(out.stdout.strip().splitlines()[-1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def accuracy(rows: list[dict[str, Any]], predicted: list[tuple[str, dict[str, str]]]
             ) -> dict[str, Any]:
    ok = [p[0] == r["intent"] for r, p in zip(rows, predicted, strict=True)]
    with_slots = [(r, p) for r, p in zip(rows, predicted, strict=True) if r["slots"]]
    by_lang: dict[str, list[bool]] = {}
    for r, good in zip(rows, ok, strict=True):
        by_lang.setdefault(r["lang"], []).append(good)
    gold_unknown = [p[0] == "unknown" for r, p in zip(rows, predicted, strict=True)
                    if r["intent"] == "unknown"]
    said_unknown = [r["intent"] == "unknown" for r, p in zip(rows, predicted, strict=True)
                    if p[0] == "unknown"]
    confusion = Counter((r["intent"], p[0]) for r, p in zip(rows, predicted, strict=True)
                        if p[0] != r["intent"])
    return {
        "heldout_lines": len(rows),
        "intent_accuracy": round(sum(ok) / len(rows), 4),
        "intent_accuracy_by_lang": {k: round(sum(v) / len(v), 4) for k, v in by_lang.items()},
        "slot_lines": len(with_slots),
        "slot_accuracy": round(sum(p[1] == r["slots"] for r, p in with_slots)
                               / max(1, len(with_slots)), 4),
        "slot_accuracy_all_lines": round(sum(p[1] == r["slots"] for r, p in
                                             zip(rows, predicted, strict=True)) / len(rows), 4),
        "unknown": {"gold": len(gold_unknown),
                    "recall": round(sum(gold_unknown) / max(1, len(gold_unknown)), 4),
                    "precision": round(sum(said_unknown) / max(1, len(said_unknown)), 4)},
        "confusion": [{"gold": g, "parsed": p, "count": n} for (g, p), n in
                      confusion.most_common(10)],
    }


def ask_back(parser: Parser, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How often a parse would be asked back, and how right the rest is."""
    parsed = [parser.parse(r["text"]) for r in rows]
    asked = [bool(i.candidates) for i in parsed]
    acted = [(r, i) for r, i, a in zip(rows, parsed, asked, strict=True)
             if not a and i.name != "unknown" and r["intent"] != "unknown"]
    return {"asked_back": round(sum(asked) / max(1, len(rows)), 4),
            "acted_accuracy": round(sum(i.name == r["intent"] for r, i in acted)
                                    / max(1, len(acted)), 4)}


def own_cross_validation(examples: list[dataset.Example], folds: int = 5) -> dict[str, Any]:
    """Grouped k-fold over the project's own examples (see the module doc)."""
    import hashlib

    from exo.agents.intent.model import train as train_model

    def fold(e: dataset.Example) -> int:
        digest = hashlib.sha256(("cv" + e.template).encode()).digest()
        return int.from_bytes(digest[:4], "big") % folds

    rows: list[dict[str, Any]] = []
    predicted: list[tuple[str, dict[str, str]]] = []
    asks: list[dict[str, Any]] = []
    for k in range(folds):
        model = train_model([e for e in examples if fold(e) != k])
        test = [{"text": e.text, "intent": e.intent, "slots": e.slots, "lang": e.lang}
                for e in examples if fold(e) == k]
        p = Parser(model=model)
        rows += test
        predicted += [(i.name, i.slots) for i in (p.parse(r["text"]) for r in test)]
        asks.append({**ask_back(p, test), "n": len(test)})
    result = {k: v for k, v in accuracy(rows, predicted).items() if k != "confusion"}
    total = sum(a["n"] for a in asks)
    for key in ("asked_back", "acted_accuracy"):
        result[key] = round(sum(a[key] * a["n"] for a in asks) / total, 4)
    result["folds"] = folds
    return result


def _accuracy_on(parser: Parser, rows: list[dict[str, Any]]) -> dict[str, Any]:
    predicted = [(i.name, i.slots) for i in (parser.parse(r["text"]) for r in rows)]
    return {k: v for k, v in accuracy(rows, predicted).items() if k != "confusion"}


def voice_round_trip() -> dict[str, Any]:
    from exo.agents import voice
    from exo.agents.intent import parse

    commands = [("show the cpu usage", "sys.cpu_usage"),
                ("how much memory is used", "sys.memory_usage"),
                ("show the disk usage", "sys.disk_usage"),
                ("list the processes", "proc.list"),
                ("which process uses the most memory", "proc.top_memory"),
                ("kill process four two four two", "proc.kill"),
                ("switch to performance mode", "power.performance"),
                ("install firefox", "pkg.install"), ("remove nginx", "pkg.remove"),
                ("upgrade all packages", "pkg.upgrade"), ("list the modules", "module.list"),
                ("upgrade net loop to version two point one point five", "module.upgrade"),
                ("roll back the network driver", "module.rollback"),
                ("list the capabilities of firefox", "cap.list"),
                ("show the audit log", "sec.audit"), ("show the network status", "net.status"),
                ("find the file report dot pdf", "fs.find"),
                ("power off the system", "sys.shutdown"), ("what can you do", "help")]
    good = 0
    misses = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="exo-bench-ai-") as tmp:
        wav = Path(tmp) / "say.wav"
        for said, intent in commands:
            voice.synthesise(said, wav)
            heard = voice.recognise_wav(wav)
            parsed = parse(heard).name if heard else ""
            if parsed == intent:
                good += 1
            else:
                misses.append({"said": said, "heard": heard, "parsed": parsed})
    return {"commands": len(commands), "right_intent": good, "misses": misses,
            "seconds": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rounds, colds = (1, 3) if args.quick else (5, 5)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))

    rows = load_heldout(HELDOUT)
    with tempfile.TemporaryDirectory(prefix="exo-bench-ai-") as tmp:  # build from nothing
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "exo.agents.intent"], check=True, cwd=ROOT,
                       env=dict(env, XDG_CACHE_HOME=tmp), capture_output=True, timeout=600)
        build_s = time.perf_counter() - t0
    load_or_train()  # the user's cache, as the cold starts below find it
    parser = Parser()
    parser.warm()

    predicted = [(i.name, i.slots) for i in (parser.parse(r["text"]) for r in rows)]
    result: dict[str, Any] = accuracy(rows, predicted)
    result["errors"] = [{"text": r["text"], "gold": r["intent"], "parsed": p[0],
                         "gold_slots": r["slots"], "slots": p[1]}
                        for r, p in zip(rows, predicted, strict=True)
                        if p[0] != r["intent"] or p[1] != r["slots"]]

    # Peers: the same model through scikit-learn's pipeline; the grammar alone. Cold
    # starts alternate ours / the peer's so both meet the same load.
    train, own = dataset.load()
    pipe = sklearn_pipeline(train)
    cold: list[float] = []
    peer_cold: list[float] = []
    with tempfile.TemporaryDirectory(prefix="exo-bench-ai-") as tmp:
        pickled = Path(tmp) / "pipe.pkl"
        pickled.write_bytes(pickle.dumps(pipe))
        for _ in range(colds):
            cold.append(_python(_COLD, COLD_SENTENCE, env=env))
            peer_cold.append(_python(_PEER_COLD, COLD_SENTENCE, str(pickled), env=env))
        rss = _python(_RSS, str(HELDOUT), env=env)
        peer_rss = _python(_PEER_RSS, str(HELDOUT), str(pickled), env=env)
    # Warm latency, ours and the peer's interleaved sentence by sentence: on a shared
    # machine both then see the same neighbours.
    latencies: list[float] = []
    peer_lat: list[float] = []
    for _ in range(rounds):
        for r in rows:
            t = time.perf_counter()
            parser.parse(r["text"])
            latencies.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            pipe.predict_proba([r["text"]])
            peer_lat.append((time.perf_counter() - t) * 1000)
    ours = [max(parser.model.probabilities(r["text"]).items(), key=lambda kv: kv[1])[0]
            for r in rows]
    theirs = list(pipe.predict([r["text"] for r in rows]))
    grammar = CommandGrammar()
    grammar_only = [grammar.match(r["text"]) or ("unknown", {}) for r in rows]

    own_rows = [{"text": e.text, "intent": e.intent, "slots": e.slots, "lang": e.lang}
                for e in own]
    own_pred = [(i.name, i.slots) for i in (parser.parse(r["text"]) for r in own_rows)]
    own_result = accuracy(own_rows, own_pred)
    own_result.update(ask_back(parser, own_rows))

    result.update({
        "p50_ms": round(_pct(latencies, 0.50), 3),
        "p95_ms": round(_pct(latencies, 0.95), 3),
        "p99_ms": round(_pct(latencies, 0.99), 3),
        "cold_ms": round(statistics.median(cold), 1),
        "build_s": round(build_s, 2),
        "rss_mb": round(rss, 1),
        "model": {"features": len(parser.model.index), "classes": len(parser.model.classes),
                  "cache_bytes": cache_path().stat().st_size, "train_sentences": len(train)},
        "peer_sklearn": {
            "cold_ms": round(statistics.median(peer_cold), 1),
            "p50_ms": round(_pct(peer_lat, 0.50), 3),
            "p95_ms": round(_pct(peer_lat, 0.95), 3),
            "rss_mb": round(peer_rss, 1),
            "same_top_class_share": round(sum(a == b for a, b in zip(ours, theirs, strict=True))
                                          / len(rows), 4),
        },
        "peer_grammar_only": {k: v for k, v in accuracy(rows, grammar_only).items()
                              if k in ("intent_accuracy", "slot_accuracy")},
        "peer_python_rss_mb": round(_python(_BARE_RSS, env=env), 1),
        "own_heldout": {k: v for k, v in own_result.items() if k != "confusion"},
        "heldout_1": _accuracy_on(parser, load_heldout(HELDOUT_1)),
        "own_cv": own_cross_validation(train + own),
        "voice": None if args.quick else voice_round_trip(),
    })
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    summary = {k: result[k] for k in ("intent_accuracy", "slot_accuracy", "p95_ms", "cold_ms",
                                      "rss_mb")}
    print(json.dumps(summary), "->", RESULTS.relative_to(ROOT))


if __name__ == "__main__":
    main()
