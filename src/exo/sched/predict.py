"""Burst prediction: an EMA of each task's run bursts, and the class it implies.

The seed's predictive scheduler files a task by how long it will run once picked: Hot
(< 1 ms), Normal (1–10 ms), Cold (≥ 10 ms). The prediction is an exponential moving
average of the bursts it ran, ``p = α·burst + (1 − α)·p`` with α = 0.3, over a 16-sample
history: the EMA is recomputed over the last ``history`` bursts, so a burst older than the
window no longer counts at all (with α = 0.3 its weight would be below 0.1 % anyway, but a
window makes the prediction a function of what the task did recently, nothing else), and
normalised so that the weights of the bursts in the window sum to one.
Accuracy is measured as it goes: before each burst is folded in, the class predicted for it
is compared with the class it turned out to have.
"""

from __future__ import annotations

HOT, NORMAL, COLD = 0, 1, 2  # Predictor.observe uses the literals
CLASS_NAMES = ("hot", "normal", "cold")

ALPHA = 0.3
HISTORY = 16
HOT_NS = 1_000_000       # a burst under 1 ms is Hot
COLD_NS = 10_000_000     # 10 ms and over is Cold; Normal in between


class Config:
    """The predictor's knobs (the issue: α and the history length are configurable)."""

    __slots__ = ("alpha", "cold_ns", "history", "hot_ns")

    def __init__(self, alpha: float = ALPHA, history: int = HISTORY,
                 hot_ns: int = HOT_NS, cold_ns: int = COLD_NS) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if history < 1:
            raise ValueError(f"history must be at least 1, got {history}")
        if not 0 < hot_ns < cold_ns:
            raise ValueError("need 0 < hot_ns < cold_ns")
        self.alpha = alpha
        self.history = history
        self.hot_ns = hot_ns
        self.cold_ns = cold_ns

    def classify(self, ns: float) -> int:
        """The class of a burst (or of a prediction) of ``ns`` nanoseconds."""
        if ns < self.hot_ns:
            return HOT
        return NORMAL if ns < self.cold_ns else COLD


DEFAULT = Config()


class Accuracy:
    """Predicted class against the class of the burst that followed: hits over total."""

    __slots__ = ("hits", "total")

    def __init__(self) -> None:
        self.hits = 0
        self.total = 0

    def record(self, hit: bool) -> None:
        self.total += 1
        self.hits += hit

    @property
    def ratio(self) -> float | None:
        return self.hits / self.total if self.total else None


class Predictor:
    """One task's burst history, prediction and accuracy.

    The prediction is the EMA over the last ``history`` bursts, normalised: weights
    α·(1 − α)^k for the k-th most recent burst, k < history, divided by their sum. It is
    updated in O(1) per burst (add the new burst, subtract the one leaving the window,
    kept in a ring of ``history`` slots), so observing costs the same whatever the
    history length. It runs at every switch, hence the flat code and the config copied
    into slots.
    """

    __slots__ = ("_alpha", "_cold", "_drop", "_hot", "_keep", "_norm_full", "_norms", "_pos",
                 "_raw", "_ring", "_window", "bursts", "config", "hits", "klass",
                 "predicted", "prediction_ns", "total_ns")

    def __init__(self, config: Config = DEFAULT, klass: int | None = None) -> None:
        self.config = config
        self.bursts = 0
        self.total_ns = 0
        self.hits = 0       # bursts whose class was the one predicted
        self.predicted = 0  # bursts a prediction was made for (all but the first)
        # No history yet: a hint (spawn(..., klass=...)) or Normal, the middle queue.
        self.klass = NORMAL if klass is None else klass
        self.prediction_ns = 0.0
        self._alpha = alpha = config.alpha
        self._keep = keep = 1.0 - alpha
        self._window = window = config.history
        self._hot = config.hot_ns
        self._cold = config.cold_ns
        self._raw = 0.0
        self._ring = [0] * window  # the last bursts; 0 until filled (subtracts nothing)
        self._pos = 0
        self._drop = alpha * keep ** window  # the weight of the burst leaving the window
        # 1 / (sum of the weights of n bursts), n = 0..history
        self._norms = [0.0] + [1.0 / (1.0 - keep ** n) if keep else 1.0
                               for n in range(1, window + 1)]
        self._norm_full = self._norms[window]

    @property
    def history(self) -> list[int]:
        """The bursts in the window, oldest first."""
        n = min(self.bursts, self._window)
        ring, pos = self._ring, self._pos
        ordered = ring[pos:] + ring[:pos]
        return ordered[len(ordered) - n:]

    @property
    def accuracy(self) -> Accuracy:
        acc = Accuracy()
        acc.hits, acc.total = self.hits, self.predicted
        return acc

    def observe(self, burst_ns: int, shared: Accuracy | None = None) -> int:
        """Fold one burst in; return the task's class for its next burst. ``shared``
        is credited with the same hit or miss (the scheduler instead sums its tasks')."""
        hot = self._hot
        cold = self._cold
        n = self.bursts
        if n:
            self.predicted += 1
            hit = (0 if burst_ns < hot else 1 if burst_ns < cold else 2) == self.klass
            if hit:
                self.hits += 1
            if shared is not None:
                shared.record(hit)
        self.bursts = n + 1
        self.total_ns += burst_ns
        ring = self._ring
        pos = self._pos
        self._raw = raw = (self._alpha * burst_ns + self._keep * self._raw
                           - self._drop * ring[pos])
        ring[pos] = burst_ns
        pos += 1
        self._pos = pos if pos < self._window else 0
        self.prediction_ns = prediction = raw * (
            self._norm_full if n >= self._window else self._norms[n + 1])
        self.klass = klass = 0 if prediction < hot else 1 if prediction < cold else 2
        return klass


def replay_accuracy(bursts_by_task: dict[str, list[int]], config: Config = DEFAULT) -> float:
    """Accuracy of the predictor over a recorded trace (task → its bursts, in order)."""
    total = Accuracy()
    for bursts in bursts_by_task.values():
        predictor = Predictor(config)
        for burst in bursts:
            predictor.observe(burst, total)
    return total.ratio if total.ratio is not None else 1.0
