"""Slot rules over free phrasing, and the command grammar's edges."""

from __future__ import annotations

import pytest

from exo.agents.intent.grammar import CommandGrammar
from exo.agents.intent.normalise import for_model
from exo.agents.intent.slots import MODULE_ALIASES, extract, resolve_module


@pytest.mark.parametrize(("intent", "text", "slots"), [
    ("proc.kill", "kill the firefox process", {"target": "firefox"}),
    ("proc.kill", "arrête le processus numéro 4242 s'il te plaît", {"target": "4242"}),
    ("proc.kill", "make backup-daemon stop", {"target": "backup-daemon"}),
    ("pkg.install", "download and install ripgrep", {"package": "ripgrep"}),
    ("pkg.install", "j'aimerais installer le paquet hello-exo", {"package": "hello-exo"}),
    ("pkg.remove", "I don't need sqlite3 anymore", {"package": "sqlite3"}),
    ("pkg.upgrade", "upgrade all packages", {}),
    ("pkg.upgrade", "mets jq à jour", {"package": "jq"}),
    ("pkg.search", "search the repository for an image viewer", {"query": "image viewer"}),
    ("pkg.search", "cherche un paquet pour lecteur de musique",
     {"query": "lecteur de musique"}),
    ("module.upgrade", "upgrade fs/fat to v3.2.1", {"module": "fs/fat", "version": "3.2.1"}),
    ("module.rollback", "annule la mise à jour du pilote réseau", {"module": "net/loop"}),
    ("module.rollback", "revert the storage driver", {"module": "block/file"}),
    ("cap.list", "list my capabilities", {}),
    ("cap.list", "what permissions does postgres have", {"target": "postgres"}),
    ("cap.revoke", "take away nginx's access to net://0.0.0.0:8080",
     {"target": "nginx", "capability": "net://0.0.0.0:8080"}),
    ("fs.find", "where did I put todo.md", {"name": "todo.md"}),
    ("fs.find", "find a file called 'quarterly report'", {"name": "quarterly report"}),
    ("sys.cpu_usage", "what is the cpu usage of process 42", {}),
    ("module.upgrade", "Move the net driver to 4.0.1.", {"module": "net/loop",
                                                         "version": "4.0.1"}),
    ("pkg.search", 'search for "http client"', {"query": "http client"}),
])
def test_slot_rules(intent: str, text: str, slots: dict[str, str]) -> None:
    assert extract(intent, text) == slots


def test_a_url_is_not_a_module_path_nor_a_version() -> None:
    assert resolve_module("revoke module://net/loop from 1.2.3.4") is None
    assert extract("module.upgrade", "upgrade block/file, not storage://a/b/9.9") == {
        "module": "block/file"}


def test_alias_table_names_the_shipped_modules() -> None:
    assert MODULE_ALIASES == {"net": "net/loop", "block": "block/file",
                              "serial": "serial/pty"}
    assert resolve_module("le pilote réseau") == "net/loop"
    assert resolve_module("the network driver", ["block/file", "net/e1000"]) == "net/e1000"


def test_classifier_view_hides_slot_values() -> None:
    assert for_model("Mets à jour net/loop en 2.1.5 pour PID 42") == \
        "mets a jour modpath en vernum pour pid num"
    assert for_model("revoke net://0.0.0.0:8080 of report.pdf") == \
        "revoke capuri of filename"


@pytest.mark.parametrize("sentence", [
    "kill", "install", "install the nginx package", "module upgrade net", "kill 42x",
    "cap revoke", "find", "search for a file named x", "module upgrade net/loop --version",
    "install nginx redis",
])
def test_grammar_leaves_incomplete_or_free_forms_to_the_model(sentence: str) -> None:
    assert CommandGrammar().match(sentence) is None
