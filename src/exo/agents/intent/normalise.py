"""Text normalisation shared by the classifier's training and its inference.

Slot-like spans (capability URIs, module paths, versions, file names, numbers) are replaced
by placeholder words before the classifier sees a sentence: what matters for the intent is
that a version or a file name is there, not which one, and an unseen package or pid must
not move the prediction. The slot rules (slots.py) read the original sentence instead.
"""

from __future__ import annotations

import re
import unicodedata

#: Longest sentence the parser accepts, in characters (issue 15: bounded cost).
MAX_CHARS = 1000

CAP_URI_RE = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s,;'\"()<>]*", re.IGNORECASE)
MODULE_PATH_RE = re.compile(r"(?<![\w/.:])([a-z][a-z0-9_-]*/[a-z0-9][a-z0-9_.-]*)(?![\w/])",
                            re.IGNORECASE)
VERSION_RE = re.compile(r"(?<![\w.])v?(\d+\.\d+(?:\.\d+)*)(?!\w|\.\w)", re.IGNORECASE)
FILE_RE = re.compile(r"(?<![\w/.])([\w-]+(?:\.[a-z0-9]{1,5})+)(?![\w])", re.IGNORECASE)
NUMBER_RE = re.compile(r"(?<![\w.])\d+(?![\w.])")
_SPACE_RE = re.compile(r"\s+")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "«": '"', "»": '"'})


def clean(text: str) -> str:
    """NFC, one kind of apostrophe, single spaces, stripped: the form every layer reads."""
    text = unicodedata.normalize("NFC", text).translate(_APOSTROPHES)
    return _SPACE_RE.sub(" ", text).strip()


def fold(text: str) -> str:
    """Lower case without accents: people type 'desinstalle' as often as 'désinstalle'."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def for_model(text: str) -> str:
    """The classifier's view of a sentence: folded, slot values replaced by placeholders."""
    text = clean(text)
    text = CAP_URI_RE.sub(" capuri ", text)
    text = VERSION_RE.sub(" vernum ", text)
    text = MODULE_PATH_RE.sub(" modpath ", text)
    text = FILE_RE.sub(lambda m: m.group(0) if _is_word(m.group(0)) else " filename ", text)
    text = NUMBER_RE.sub(" num ", text)
    text = fold(text)
    text = re.sub(r"[^\w' -]+", " ", text)
    return _SPACE_RE.sub(" ", text).strip()


def _is_word(span: str) -> bool:
    """'exo-os.' or 'e.g' are not file names; a name with a known-looking extension is."""
    stem, _, ext = span.rpartition(".")
    return not stem or ext.isdigit()
