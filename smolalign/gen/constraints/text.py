"""The text measurements the checkers share: words, sentences, paragraphs, language, counts against a relation.

Language detection uses `langdetect` (pure Python, language profiles inside the wheel, so offline), seeded for
repeatable answers; it is imported only when a language check runs.
"""

from __future__ import annotations

import re

RELATIONS = ("less than", "at least")
# The codes langdetect 1.0.9 knows (tests compare this with its profiles); "zh" stands for zh-cn and zh-tw.
LANGUAGES = frozenset(
    "af ar bg bn ca cs cy da de el en es et fa fi fr gu he hi hr hu id it ja kn ko lt lv mk ml mr ne nl no pa pl "
    "pt ro ru sk sl so sq sv sw ta te th tl tr uk ur vi zh zh-cn zh-tw".split())

# ---- text measurements ------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "no", "fig",
                  "approx", "inc", "ltd", "co", "u.s", "a.m", "p.m"}
_SENTENCE_END = re.compile(r"([.!?\u2026]+)[\"'\u201d\u2019)\]]*\s+")


def count_words(text: str) -> int:
    """Runs of word characters, the same unit as IFEval's `\\w+` tokenizer ("don't" is two words)."""
    return len(_WORD.findall(text))


def split_sentences(text: str) -> list[str]:
    """Punkt-like split without its trained data: end punctuation + space, unless it ends a known
    abbreviation or an initial, or the next word starts in lower case; blank lines also end a sentence."""
    sentences = []
    for block in re.split(r"\n\s*\n", text):
        start = 0
        for match in _SENTENCE_END.finditer(block):
            before = block[start:match.start()].split()
            last = before[-1].lower().rstrip(".") if before else ""
            nxt = block[match.end():match.end() + 1]
            if match.group(1) == "." and (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
                continue
            if nxt.islower():
                continue
            sentences.append(block[start:match.end()])
            start = match.end()
        sentences.append(block[start:])
    return [s.strip() for s in sentences if _WORD.search(s)]


def _divided_paragraphs(text: str) -> list[str] | None:
    """Paragraphs separated by a markdown divider line `***`; None when one between two dividers is empty."""
    parts = [p.strip() for p in re.split(r"(?m)^[ \t]*\*\*\*[ \t]*$", text)]
    while parts and not parts[0]:
        parts.pop(0)
    while parts and not parts[-1]:
        parts.pop()
    return None if any(not p for p in parts) else parts


def _blank_line_paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language ("zh" for Chinese), or None when langdetect finds no features."""
    try:
        from langdetect import DetectorFactory, detect
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError as error:
        raise RuntimeError("language checks need langdetect: pip install 'langdetect>=1.0.9'") from error
    DetectorFactory.seed = 0  # langdetect samples at random; a fixed seed gives one answer per text
    try:
        code = detect(text)
    except LangDetectException:
        return None
    return code.split("-")[0]


def _compare(count: int, relation: str, target: int) -> bool:
    return count < target if relation == "less than" else count >= target


def _occurrences(text: str, word: str) -> int:
    """Case-insensitive occurrences of `word` as a whole word or phrase (IFEval's existence check matches
    substrings; whole words keep "cat" from being found in "category")."""
    pattern = r"(?<!\w)" + r"\s+".join(map(re.escape, word.split())) + r"(?!\w)"
    return len(re.findall(pattern, text, flags=re.IGNORECASE))
