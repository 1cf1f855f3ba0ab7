"""The text measurements the checkers share: words, language, keyword matches, counts against a relation, and
the two readings a checker can take.

Language detection uses `langdetect` (pure Python, language profiles inside the wheel, so offline), seeded for
repeatable answers (IFEval leaves it unseeded, so its own verdicts can change from run to run on borderline
text); it is imported only when a language check runs.
"""

from __future__ import annotations

import re

RELATIONS = ("less than", "at least")
# "ifeval": IFEval's own verdicts (the default). "strict": the stricter readings kept where they are arguably
# better (whole-word keywords, markers at the start of a line, an answer after a repeated prompt, ...); each
# checker's docstring names its strict reading.
READINGS = ("ifeval", "strict")
# IFEval's 30 response languages (ISO 639-1, as langdetect 1.0.9 answers them); IFEval rejects any other code.
LANGUAGES = {
    "en": "English", "es": "Spanish", "pt": "Portuguese", "ar": "Arabic", "hi": "Hindi", "fr": "French",
    "ru": "Russian", "de": "German", "ja": "Japanese", "it": "Italian", "bn": "Bengali", "uk": "Ukrainian",
    "th": "Thai", "ur": "Urdu", "ta": "Tamil", "te": "Telugu", "bg": "Bulgarian", "ko": "Korean", "pl": "Polish",
    "he": "Hebrew", "fa": "Persian", "vi": "Vietnamese", "ne": "Nepali", "sw": "Swahili", "kn": "Kannada",
    "mr": "Marathi", "gu": "Gujarati", "pa": "Punjabi", "ml": "Malayalam", "fi": "Finnish",
}

_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Runs of word characters, IFEval's `\\w+` tokenizer ("don't" is two words)."""
    return len(_WORD.findall(text))


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


def is_language(text: str, code: str, strict: bool) -> bool:
    """Whether langdetect says `code`. Text it cannot place (no letters it knows: a URL, an e-mail address)
    counts as followed in IFEval, and as not followed in the strict reading."""
    found = detect_language(text)
    return not strict if found is None else found == code


def _compare(count: int, relation: str, target: int) -> bool:
    return count < target if relation == "less than" else count >= target


def _whole_words(text: str, word: str) -> int:
    """The strict reading of a keyword: case-insensitive occurrences as a whole word or phrase, taken literally
    ("cat" is not found in "category", and "U.S." matches only itself)."""
    return len(re.findall(r"(?<!\w)" + re.escape(word.strip()) + r"(?!\w)", text, flags=re.IGNORECASE))
