"""The classifier: our numpy forward pass is scikit-learn's model, the cache is plain arrays
that rebuild themselves when stale or damaged, and the training data covers the catalogue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exo.agents.intent import dataset
from exo.agents.intent.model import IntentModel, ModelError, cache_path, load_or_train, train
from exo.agents.intents import CATALOGUE

SENTENCES = ["Quel est l'usage CPU ?", "kill the backup daemon", "mets à jour net/loop en 2.1",
             "tell me a joke", "", "où est report.pdf", "x" * 1000]


def test_numpy_inference_equals_scikit_learn() -> None:
    from exo.agents.intent.model import sklearn_pipeline

    train_set, _ = dataset.load()
    subset = train_set[::3]
    ours = train(subset)
    pipe = sklearn_pipeline(subset)
    expected = pipe.predict_proba(SENTENCES)
    classes = list(pipe.classes_)
    for row, sentence in zip(expected, SENTENCES, strict=True):
        probs = ours.probabilities(sentence)
        assert [probs[c] for c in classes] == pytest.approx(list(row), abs=1e-6)


def test_cache_is_built_once_then_loaded(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    small = dataset.load()[0][::4]  # the cache is under test here, not the model's quality
    monkeypatch.setattr(dataset, "load", lambda: (small, []))
    path = cache_path()
    assert path.parent == tmp_path / "exo-os"
    first = load_or_train()
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    second = load_or_train()
    assert path.stat().st_mtime_ns == stamp  # loaded, not trained again
    assert second.classes == first.classes
    assert second.probabilities("install nginx") == pytest.approx(
        first.probabilities("install nginx"))

    good = path.read_bytes()
    for damage in (b"not a model", good[:len(good) // 2], b""):
        path.write_bytes(damage)  # damaged or truncated: trained again, the file repaired
        again = load_or_train()
        assert again.classes == first.classes
        assert IntentModel.load(path).classes == first.classes


def test_a_pickled_cache_is_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    evil = np.array([object()], dtype=object)
    np.savez(path, vocabulary=evil, idf=evil, coef=evil, intercept=evil, classes=evil)
    with pytest.raises(ValueError, match="pickle"):
        IntentModel.load(path)


def test_arrays_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ModelError):
        IntentModel(np.array(["a", "b"]), np.ones(2), np.ones((3, 2)), np.ones(2),
                    np.array(["x", "y", "z"]))


def test_training_data_covers_every_intent_in_both_languages() -> None:
    train_set, _ = dataset.load()
    for spec in CATALOGUE:
        for lang in ("en", "fr"):
            assert any(e.intent == spec.name and e.lang == lang for e in train_set), \
                (spec.name, lang)
    assert len(train_set) >= 1000
    assert sum(e.intent == "unknown" for e in train_set) >= 100


def test_heldout_templates_never_reach_training() -> None:
    train_set, heldout = dataset.load()
    assert heldout
    assert {e.template for e in train_set}.isdisjoint({e.template for e in heldout})


def test_gold_slots_are_the_intents_own() -> None:
    """A sentence may leave a required slot out ("revoke net://…": of whom?), the assistant
    then asks; it never carries a slot its intent does not have."""
    from exo.agents.intents import BY_NAME

    train_set, heldout = dataset.load()
    for e in train_set + heldout:
        spec = BY_NAME[e.intent]
        assert set(e.slots) <= set(spec.slots) | set(spec.optional), e
