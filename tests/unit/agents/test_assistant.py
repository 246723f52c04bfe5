"""The assistant's decisions: ask back, help, confirmation, language, attenuation."""

from __future__ import annotations

from pathlib import Path

import pytest

from exo.agents.assistant import Answer, Context, act, answer
from exo.agents.intents import CATALOGUE, Intent


def _parse(intent: Intent):  # type: ignore[no-untyped-def]
    return lambda _sentence: intent


def test_low_confidence_asks_back_instead_of_acting() -> None:
    a = answer("cpu?", parse=_parse(Intent("sys.cpu_usage", {}, 0.3, "en")))
    assert a.question and "Did you mean" in a.text and a.intent == "sys.cpu_usage"
    fr = answer("cpu ?", parse=_parse(Intent("sys.cpu_usage", {}, 0.3, "fr")))
    assert fr.question and fr.text.startswith("Voulez-vous dire")


def test_the_threshold_falls_back_to_0_6() -> None:
    assert not answer("x", parse=_parse(Intent("help", {}, 0.61))).question
    assert answer("x", parse=_parse(Intent("sys.info", {}, 0.59))).question


@pytest.mark.parametrize("name", ["unknown", "help"])
def test_unknown_and_help_say_what_the_assistant_can_do(name: str) -> None:
    a = answer("make me a sandwich", parse=_parse(Intent(name, {}, 0.9)))
    for spec in CATALOGUE:
        if spec.name not in ("help", "unknown"):
            assert spec.name in a.text
    assert a.ok == (name == "help")


def test_a_missing_slot_is_asked_for() -> None:
    a = act(Intent("pkg.install", {}, 0.95))
    assert a.question and "package" in a.text


@pytest.mark.parametrize("intent", [
    Intent("proc.kill", {"target": "7"}, 0.99),
    Intent("pkg.remove", {"package": "nginx"}, 0.99),
    Intent("cap.revoke", {"target": "3"}, 0.99),
    Intent("sys.shutdown", {}, 0.99),
])
def test_destructive_intents_need_a_yes(intent: Intent) -> None:
    asked: list[str] = []

    def no(question: str) -> bool:
        asked.append(question)
        return False

    refused = act(intent, confirm=no)
    assert asked and not refused.ok and not refused.done
    assert refused.text.startswith("Cancelled") and asked[0] in refused.text
    unasked = act(intent)  # no way to ask: never done
    assert unasked.text.startswith("Cancelled") and not unasked.done


def test_a_resource_question_without_a_kernel_is_answered_by_ai_res(tmp_path: Path) -> None:
    a = act(Intent("sys.cpu_usage", {}, 0.9, "fr"), context=Context(root=tmp_path))
    assert a.ok and a.agent == "AI-Res" and a.text.startswith("Utilisation CPU : ")
    assert a.line().startswith("[AI-Res] Utilisation CPU : ")
    en = act(Intent("sys.memory_usage", {}, 0.9, "fr"), lang="en",
             context=Context(root=tmp_path))
    assert en.text.startswith("Memory: ")  # lang= overrides the parser's guess


def test_acting_without_a_kernel_says_so_rather_than_pretending() -> None:
    for intent in (Intent("power.save", {}, 0.9), Intent("cap.list", {}, 0.9),
                   Intent("proc.kill", {"target": "3"}, 0.9)):
        a = act(intent, confirm=lambda _q: True)
        assert not a.ok and not a.done and "kernel" in a.text


def test_the_assistant_holds_an_attenuated_set() -> None:
    class Session:
        grants = ()
        user = "demo"

        def holds(self, name: str, rights: str) -> bool:
            return name.startswith("agent://")

    ctx = Context(session=Session(), root=Path("/"))
    assert ctx.holds("agent://ai-res", "SEND")
    assert not ctx.holds("agent://ai-res", "RECV")  # not in the assistant's own set
    assert not ctx.holds("device://power", "WRITE")  # not in the session's
    assert not ctx.holds("net://*", "SEND")  # in neither


def test_an_answer_has_a_json_form() -> None:
    a = Answer("x", agent="AI-Res", intent="sys.info", slots={"a": "b"})
    assert a.to_json() == {"agent": "AI-Res", "intent": "sys.info", "slots": {"a": "b"},
                           "lang": "en", "ok": True, "question": False, "done": False,
                           "text": "x", "choices": []}
    assert Answer("one\ntwo", agent="X").line() == "[X] one\ntwo"


def test_a_sentence_goes_through_the_intent_engine_to_its_agent() -> None:
    a = answer("Quel est l'usage CPU ?")
    assert (a.ok, a.agent, a.intent, a.lang) == (True, "AI-Res", "sys.cpu_usage", "fr")
    assert a.text.startswith("Utilisation CPU :")
    refused: list[str] = []
    a = answer("what's the weather like in Paris tomorrow", confirm=refused.append)
    assert (a.ok, a.intent) == (False, "unknown") and "sys.cpu_usage" in a.text
    assert refused == []
