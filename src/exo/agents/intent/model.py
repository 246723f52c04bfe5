"""Layer 2: the free-phrasing classifier (TF-IDF over character and word n-grams, then a
multinomial logistic regression), trained by the project on data/ and cached.

Choice (issue 15 "built at install time or on first use"): trained on first use and cached
under ``$XDG_CACHE_HOME/exo-os`` (or ``~/.cache/exo-os``), keyed by a hash of the data files
and of this feature code, so editing the data retrains by itself; ``python -m
exo.agents.intent`` builds it ahead of time (``make setup`` does). Nothing is
downloaded. scikit-learn trains; the cache holds plain arrays (``.npz``, loaded with
``allow_pickle=False``, so a cache file can never run code) and inference is the same
arithmetic in numpy: TF-IDF rows with sublinear tf and l2 norm, a dot product and a
softmax. That keeps the cold start free of importing scikit-learn (≈0.9 s here).
tests/unit/agents/test_intent_model.py checks the two agree.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import os
import tempfile
import threading
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from exo.agents.intent import dataset
from exo.agents.intent.cues import cues
from exo.agents.intent.normalise import for_model

#: Bump when features() or the training recipe changes: it is part of the cache key.
RECIPE = "tfidf-char2-5-word1-2-cues-lr-v2"
_MAX_FEATURES_PER_SENTENCE = 20_000  # bounded cost whatever the input (≈ MAX_CHARS * 14)


def features(text: str) -> list[str]:
    """Character 2..5-grams inside word boundaries, word uni- and bigrams, and the
    sentence's cues (cues.py: a definition question, shopping, arithmetic, this system)."""
    norm = for_model(text)
    words = norm.split()
    out: list[str] = []
    for word in words:
        padded = f" {word} "
        for n in range(2, 6):
            out.extend(padded[i:i + n] for i in range(max(0, len(padded) - n + 1)))
    out.extend("w:" + w for w in words)
    out.extend(f"b:{a} {b}" for a, b in itertools.pairwise(words))
    return out[:_MAX_FEATURES_PER_SENTENCE] + cues(norm)


class ModelError(RuntimeError):
    """The model can be neither loaded nor trained (e.g. scikit-learn missing)."""


class IntentModel:
    """Trained weights and the numpy forward pass; read-only once built, so thread-safe."""

    def __init__(self, vocabulary: npt.NDArray[np.str_], idf: npt.NDArray[np.float64],
                 coef: npt.NDArray[np.float64], intercept: npt.NDArray[np.float64],
                 classes: npt.NDArray[np.str_]) -> None:
        n_classes, n_features = coef.shape
        if (idf.shape != (n_features,) or vocabulary.shape != (n_features,)
                or intercept.shape != (n_classes,) or classes.shape != (n_classes,)):
            raise ModelError("model arrays do not fit together")
        self.index: dict[str, int] = {str(f): i for i, f in enumerate(vocabulary)}
        self.idf = idf.astype(np.float64)
        self.coef_t = np.ascontiguousarray(coef.T, dtype=np.float64)  # features x classes
        self.intercept = intercept.astype(np.float64)
        self.classes: list[str] = [str(c) for c in classes]

    def probabilities(self, text: str) -> dict[str, float]:
        """Class -> probability, as scikit-learn's predict_proba would give."""
        counts = Counter(f for f in features(text) if f in self.index)
        scores = self.intercept.copy()
        if counts:
            idx = np.fromiter((self.index[f] for f in counts), dtype=np.int64, count=len(counts))
            tf = np.fromiter((1.0 + math.log(c) for c in counts.values()), dtype=np.float64,
                             count=len(counts))
            weights = tf * self.idf[idx]
            weights /= np.linalg.norm(weights)
            scores = scores + weights @ self.coef_t[idx]
        scores -= scores.max()
        exp = np.exp(scores)
        exp /= exp.sum()
        return dict(zip(self.classes, (float(p) for p in exp), strict=True))

    def save(self, path: Path) -> None:
        vocab = np.empty(len(self.index), dtype=object)
        for feature, i in self.index.items():
            vocab[i] = feature
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".intent-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, vocabulary=vocab.astype(str), idf=self.idf,
                                    coef=self.coef_t.T, intercept=self.intercept,
                                    classes=np.array(self.classes, dtype=str))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> IntentModel:
        with np.load(path, allow_pickle=False) as npz:
            return cls(npz["vocabulary"], npz["idf"], npz["coef"], npz["intercept"],
                       npz["classes"])


def train(examples: list[dataset.Example]) -> IntentModel:
    """Fit on examples with scikit-learn; return the weights as an IntentModel."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise ModelError("the intent model needs scikit-learn to be trained: "
                         "pip install scikit-learn") from exc
    from threadpoolctl import threadpool_limits

    vectorizer = TfidfVectorizer(analyzer=features, sublinear_tf=True, norm="l2")
    matrix = vectorizer.fit_transform([e.text for e in examples])
    classifier = LogisticRegression(C=20.0, max_iter=3000, class_weight="balanced")
    # One BLAS thread: on a small busy machine (2 cores, neighbours' tests) a thread per
    # core made lbfgs 5x slower, not faster.
    with threadpool_limits(1):
        classifier.fit(matrix, [e.intent for e in examples])
    vocab = np.empty(len(vectorizer.vocabulary_), dtype=object)
    for feature, i in vectorizer.vocabulary_.items():
        vocab[i] = feature
    return IntentModel(vocab.astype(str), np.asarray(vectorizer.idf_), classifier.coef_,
                       classifier.intercept_, np.asarray(classifier.classes_).astype(str))


def sklearn_pipeline(examples: list[dataset.Example]) -> Any:
    """The same recipe as a scikit-learn pipeline (tests compare it with IntentModel)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from threadpoolctl import threadpool_limits

    pipe = make_pipeline(TfidfVectorizer(analyzer=features, sublinear_tf=True, norm="l2"),
                         LogisticRegression(C=20.0, max_iter=3000, class_weight="balanced"))
    with threadpool_limits(1):
        pipe.fit([e.text for e in examples], [e.intent for e in examples])
    return pipe


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "exo-os"


def cache_path() -> Path:
    key = hashlib.sha256(dataset.data_bytes() + RECIPE.encode()).hexdigest()[:16]
    return cache_dir() / f"intent-model-{key}.npz"


_build_lock = threading.Lock()


def load_or_train() -> IntentModel:
    """The cached model, or a freshly trained one (cached when the cache is writable)."""
    try:
        path: Path | None = cache_path()
    except RuntimeError:  # no home directory to cache under: train, keep it in memory
        path = None
    with _build_lock:
        if path is not None:
            try:
                return IntentModel.load(path)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, ModelError):
                pass  # absent, stale or damaged: train again
        train_set, _ = dataset.load()
        model = train(train_set)
        if path is not None:
            with contextlib.suppress(OSError):  # read-only home: keep it in memory
                model.save(path)
        return model


def main() -> None:
    """``python -m exo.agents.intent``: build the cache ahead of first use."""
    model = load_or_train()
    print(f"intent model ready: {cache_path()} ({len(model.index)} features, "
          f"{len(model.classes)} classes)")

