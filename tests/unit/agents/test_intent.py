"""The intent engine as the assistant and ``exo ai parse`` use it: sentences in French and
English -> catalogue intent, slots, confidence, language; unknowns stay unknown."""

from __future__ import annotations

import threading

import pytest

from exo.agents.intent import (
    CONFIDENCE_THRESHOLD,
    MAX_CHARS,
    IntentInputError,
    Parser,
    detect_language,
    parse,
)
from exo.agents.intents import BY_NAME


@pytest.fixture(scope="module")
def parser() -> Parser:
    p = Parser()
    p.warm()
    return p


EXACT = [
    ("kill 4242", "proc.kill", {"target": "4242"}),
    ("tue firefox", "proc.kill", {"target": "firefox"}),
    ("install nginx", "pkg.install", {"package": "nginx"}),
    ("installe nginx", "pkg.install", {"package": "nginx"}),
    ("exo install Redis", "pkg.install", {"package": "redis"}),
    ("désinstalle vim", "pkg.remove", {"package": "vim"}),
    ("upgrade", "pkg.upgrade", {}),
    ("mets à jour curl", "pkg.upgrade", {"package": "curl"}),
    ("module upgrade net/loop --version 2.1.5", "module.upgrade",
     {"module": "net/loop", "version": "2.1.5"}),
    ("module rollback block/file", "module.rollback", {"module": "block/file"}),
    ("cap revoke nginx net://0.0.0.0:8080", "cap.revoke",
     {"target": "nginx", "capability": "net://0.0.0.0:8080"}),
    ("caps", "cap.list", {}),
    ("find report.pdf", "fs.find", {"name": "report.pdf"}),
    ("power save", "power.save", {}),
    ("éteins", "sys.shutdown", {}),
    ("aide", "help", {}),
]


@pytest.mark.parametrize(("sentence", "intent", "slots"), EXACT)
def test_exact_command_forms_are_certain(parser: Parser, sentence: str, intent: str,
                                         slots: dict[str, str]) -> None:
    got = parser.parse(sentence)
    assert (got.name, got.slots, got.confidence) == (intent, slots, 1.0)


FREE = [
    ("Quel est l'usage CPU ?", "sys.cpu_usage", {}, "fr"),
    ("how much RAM is still free?", "sys.memory_usage", {}, "en"),
    ("il reste combien de place sur le disque", "sys.disk_usage", {}, "fr"),
    ("which program is eating all my memory", "proc.top_memory", {}, "en"),
    ("please terminate the process 31337", "proc.kill", {"target": "31337"}, "en"),
    ("peux-tu arrêter firefox", "proc.kill", {"target": "firefox"}, "fr"),
    ("passe en mode économie d'énergie", "power.save", {}, "fr"),
    ("I need maximum performance now", "power.performance", {}, "en"),
    ("could you install the htop package for me", "pkg.install", {"package": "htop"}, "en"),
    ("je n'ai plus besoin de redis, enlève-le", "pkg.remove", {"package": "redis"}, "fr"),
    ("update everything please", "pkg.upgrade", {}, "en"),
    ("is there a package for a web server", "pkg.search", {"query": "web server"}, "en"),
    ("mets à jour le pilote réseau en version 2.1.5", "module.upgrade",
     {"module": "net/loop", "version": "2.1.5"}, "fr"),
    ("roll back the network driver", "module.rollback", {"module": "net/loop"}, "en"),
    ("what can nginx access", "cap.list", {"target": "nginx"}, "en"),
    ("révoque storage://documents/x.txt du processus 812", "cap.revoke",
     {"target": "812", "capability": "storage://documents/x.txt"}, "fr"),
    ("le tpm fonctionne-t-il ?", "sec.status", {}, "fr"),
    ("show me the audit log", "sec.audit", {}, "en"),
    ("suis-je connecté à internet", "net.status", {}, "fr"),
    ("où est le fichier budget.xlsx ?", "fs.find", {"name": "budget.xlsx"}, "fr"),
    ("turn the computer off", "sys.shutdown", {}, "en"),
    ("what can you do for me", "help", {}, "en"),
]


@pytest.mark.parametrize(("sentence", "intent", "slots", "lang"), FREE)
def test_free_phrasing_in_both_languages(parser: Parser, sentence: str, intent: str,
                                         slots: dict[str, str], lang: str) -> None:
    got = parser.parse(sentence)
    assert (got.name, got.slots, got.lang) == (intent, slots, lang)
    assert CONFIDENCE_THRESHOLD <= got.confidence < 1.0


@pytest.mark.parametrize("sentence", [
    "what's the weather like in Lyon tomorrow?",
    "raconte-moi une blague sur les chats",
    "book me a train to Marseille",
    "quelle est la capitale du Japon",
    "zzkq vvpt",
])
def test_out_of_catalogue_sentences_stay_unknown(parser: Parser, sentence: str) -> None:
    got = parser.parse(sentence)
    assert got.name == "unknown"
    assert got.slots == {}


def test_every_answer_is_a_catalogue_intent_with_its_own_slots(parser: Parser) -> None:
    for sentence, *_ in FREE + [(s, None, None) for s, *_ in EXACT]:
        got = parser.parse(sentence)
        spec = BY_NAME[got.name]
        assert set(got.slots) <= set(spec.slots) | set(spec.optional), sentence
        assert 0.0 <= got.confidence <= 1.0


def test_candidates_rank_the_guesses_for_asking_back(parser: Parser) -> None:
    ranked = parser.candidates("upgrade the network driver", k=3)
    assert ranked[0][0] == "module.upgrade"
    assert len(ranked) == 3
    assert ranked[0][1] >= ranked[1][1] >= ranked[2][1]


def test_installed_modules_decide_what_a_driver_phrase_names() -> None:
    p = Parser(modules=["block/nvme", "net/virtio"])
    assert p.parse("upgrade the network driver to 3.0").slots == {"module": "net/virtio",
                                                                   "version": "3.0"}
    assert p.parse("rétrograde le pilote de disque").slots == {"module": "block/nvme"}


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty sentence"),
    ("  \t \n", "empty sentence"),
    ("\x00\x01", "empty sentence"),
    ("a" * (MAX_CHARS + 1), "too long"),
])
def test_bad_input_is_a_clear_error(parser: Parser, text: str, message: str) -> None:
    with pytest.raises(IntentInputError, match=message):
        parser.parse(text)


def test_not_text_is_refused(parser: Parser) -> None:
    with pytest.raises(IntentInputError, match="must be text"):
        parser.parse(b"kill 1")  # type: ignore[arg-type]


def test_longest_accepted_input_is_parsed(parser: Parser) -> None:
    got = parser.parse(("install nginx " * 100)[:MAX_CHARS])
    assert got.name in BY_NAME


def test_parse_from_many_threads_gives_the_same_answers() -> None:
    p = Parser()  # cold: the threads race to load the model
    sentences = [s for s, *_ in FREE]
    expected = [(i, s) for i, s in enumerate(sentences)]
    results: dict[int, list[tuple[str, dict[str, str]]]] = {}

    def run(n: int) -> None:
        results[n] = [(p.parse(s).name, p.parse(s).slots) for _, s in expected]

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert all(r == results[0] for r in results.values())
    assert [name for name, _ in results[0]] == [intent for _, intent, *_ in FREE]


def test_module_level_parse_uses_one_shared_parser() -> None:
    assert parse("kill 7").slots == {"target": "7"}


@pytest.mark.parametrize(("text", "lang"), [
    ("Quel est l'usage CPU ?", "fr"), ("what is the cpu usage", "en"),
    ("installe nginx", "fr"), ("install nginx", "en"), ("éteins", "fr"),
    ("combien de mémoire reste-t-il", "fr"), ("how much memory is left", "en"),
])
def test_language_of_the_answer(text: str, lang: str) -> None:
    assert detect_language(text) == lang
