"""Language detection and tokenisation shared by the text metrics.

Chinese (and other CJK) text has no spaces, so it is split into single characters; runs of
other letters and digits stay whole words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

Language = Literal["en", "zh"]

CJK_RANGES = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
)
CJK_CHAR = re.compile(f"[{CJK_RANGES}]")
TOKEN = re.compile(f"[{CJK_RANGES}]|[^\\W{CJK_RANGES}]+")


def is_cjk_text(texts: Iterable[str]) -> bool:
    """True when most letters (CJK characters + other word characters) are CJK."""
    cjk = other = 0
    for text in texts:
        for ch in text:
            if CJK_CHAR.match(ch):
                cjk += 1
            elif ch.isalnum():
                other += 1
    return cjk > other


def resolve_language(setting: str, texts: Iterable[str]) -> Language:
    """``en``/``zh`` as given, or for ``auto``: ``zh`` when most characters are CJK."""
    if setting in ("en", "zh"):
        return setting  # type: ignore[return-value]
    return "zh" if is_cjk_text(texts) else "en"


def tokenize(text: str, language: Language) -> list[str]:
    """Lower-cased tokens: whitespace/punctuation-separated words; CJK characters one by one.

    For ``en`` this splits on anything that is not a letter or digit; for ``zh`` each CJK
    character is its own token and runs of other letters/digits stay words.
    """
    text = text.lower()
    if language == "zh":
        return TOKEN.findall(text)
    return re.findall(r"[^\W_]+", text)


class RougeTokenizer:
    """rouge-score tokenizer object: character-level for CJK, words otherwise."""

    def __init__(self, language: Language) -> None:
        self.language = language

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, self.language)
