"""Asking back: close calls name their candidates, and the next reply picks one."""

from __future__ import annotations

import pytest

from exo.agents.askback import PHRASES, Question, question_for
from exo.agents.assistant import Conversation, answer
from exo.agents.intent import parse
from exo.agents.intent.cues import cues
from exo.agents.intent.normalise import for_model
from exo.agents.intents import BY_NAME, Intent


def test_every_intent_has_a_phrase_in_both_languages() -> None:
    assert set(PHRASES) == set(BY_NAME) - {"unknown"}
    assert all(en and fr and en != fr for en, fr in PHRASES.values())


def test_the_question_names_both_candidates_in_the_language_asked() -> None:
    en = Question("cpu?", ("sys.cpu_usage", "proc.top_cpu"), "en")
    assert en.text() == ("Did you mean: the CPU usage, or the processes using the most "
                         "CPU? Answer 1 or 2.")
    fr = Question("cpu ?", ("sys.cpu_usage", "proc.top_cpu"), "fr")
    assert fr.text() == ("Vouliez-vous dire : l'usage CPU, ou les processus qui utilisent "
                         "le plus de CPU ? Répondez 1 ou 2.")


@pytest.mark.parametrize(("reply", "picked"), [
    ("1", "module.upgrade"), ("2", "module.rollback"), ("yes", "module.upgrade"),
    (" Oui ! ", "module.upgrade"), ("2.", "module.rollback"),
])
def test_a_reply_picks_a_choice_with_its_slots(reply: str, picked: str) -> None:
    q = Question("the serial driver", ("module.upgrade", "module.rollback"), "en")
    got = q.pick(reply, ["serial/pty"])
    assert isinstance(got, Intent)
    assert (got.name, got.slots) == (picked, {"module": "serial/pty"})


@pytest.mark.parametrize("reply", ["3", "0", "how busy is the cpu", "", "99999999"])
def test_anything_else_is_no_answer_to_the_question(reply: str) -> None:
    assert Question("x", ("sys.cpu_usage", "proc.top_cpu")).pick(reply) is None


@pytest.mark.parametrize("reply", ["no", "non", "N"])
def test_no_declines(reply: str) -> None:
    assert Question("x", ("sys.cpu_usage", "proc.top_cpu")).pick(reply) is False


def test_a_sure_parse_asks_nothing() -> None:
    assert question_for(Intent("sys.cpu_usage", {}, 0.9), "cpu") is None
    assert question_for(Intent("unknown", {}, 0.9, candidates=("help",)), "x") is None


def test_a_close_call_is_asked_back_and_the_reply_is_acted_on() -> None:
    talk = Conversation()
    asked = talk.answer("anything heavy on the cpu?")
    assert asked.question and asked.ok and asked.text.startswith("Did you mean: ")
    assert set(asked.to_json()["choices"]) == {"sys.cpu_usage", "proc.top_cpu"}
    assert "the CPU usage" in asked.text and "the processes using the most CPU" in asked.text
    choice = asked.to_json()["choices"].index("sys.cpu_usage") + 1
    done = talk.answer(str(choice))
    assert (done.intent, done.agent, done.ok) == ("sys.cpu_usage", "AI-Res", True)
    assert done.text.startswith("CPU usage: ")
    assert talk.pending is None
    again = talk.answer("1")  # no question open: "1" is a sentence again
    assert again.intent != "sys.cpu_usage" or not again.text.startswith("CPU usage")


def test_asking_back_in_french_and_declining() -> None:
    talk = Conversation()
    asked = talk.answer("processeur")
    assert asked.question and asked.lang == "fr"
    assert asked.text.startswith("Vouliez-vous dire : ")
    declined = talk.answer("non")
    assert declined.text == "D'accord, rien n'a été fait." and not declined.done


def test_a_new_sentence_instead_of_a_reply_is_answered_as_itself() -> None:
    talk = Conversation()
    assert talk.answer("anything heavy on the cpu?").question
    a = talk.answer("Quel est l'usage CPU ?")
    assert (a.intent, a.lang) == ("sys.cpu_usage", "fr") and not a.question


@pytest.mark.parametrize("sentence", [
    "buy a new CPU", "what is a package manager?", "combien font 12 fois 8",
    "explain how a CPU cache works",
])
def test_near_topic_sentences_are_unknown_and_not_asked_back(sentence: str) -> None:
    got = parse(sentence)
    assert got.name == "unknown" and got.candidates == ()
    a = answer(sentence)
    assert not a.question and not a.ok and a.text.startswith(("I did not", "Je n'ai pas"))


@pytest.mark.parametrize(("text", "cue"), [
    ("what is a package manager?", "k:concept0"), ("qu'est-ce qu'un pilote", "k:concept0"),
    ("explique comment fonctionne un cache", "k:concept0"), ("buy a new CPU", "k:shop0"),
    ("combien font 12 fois 8", "k:arith0"), ("what is 7 times 6", "k:arith0"),
    ("how busy is my cpu right now", "k:self0"),
])
def test_cues_name_the_form_of_a_sentence(text: str, cue: str) -> None:
    assert cue in cues(for_model(text))


def test_a_request_about_this_system_has_no_out_of_domain_cue() -> None:
    for text in ("what is the cpu usage", "quel est l'usage CPU ?", "install nginx",
                 "upgrade the network driver to 2.1.5"):
        assert not [c for c in cues(for_model(text)) if not c.startswith("k:self")], text
