"""The 25 instruction ids: id -> checker, id -> meaning, kwargs kinds and regular expressions, and INSTRUCTION_IDS.

SmolTalk's Smol-Constraints kept only rows whose response passes IFEval's checkers strictly for every
instruction the query carries. The checkers here give IFEval's verdicts (Google's instruction_following_eval,
which lm-eval's IFEval task copies; the tests compare the two on every hand-written case where lm-eval is
installed), written from its definitions, with its kwarg names so that labels from an LLM (or from the IFEval
data itself) fit unchanged. They are our own code because lm-eval's cannot run offline as shipped: importing
them calls `nltk.download("punkt_tab")` when that data is missing (tokens.py builds the same punkt model from a
package instead). Every checker is IFEval's "strict" variant (the response as given); a few take a stricter
reading on request (text.READINGS), which their docstrings describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import case, combination, content, keywords, language, length, startend
from . import format as format_
from .format import CONSTRAINED_OPTIONS

# ---- the checkers: (response, kwargs, strict) -> bool, one module per family ---------------------------------

_CHECKS: dict[str, Callable[[str, dict, bool], bool]] = {
    **keywords.CHECKS, **language.CHECKS, **length.CHECKS, **content.CHECKS, **format_.CHECKS,
    **combination.CHECKS, **startend.CHECKS, **case.CHECKS,
}


# ---- kwargs: name -> kind, a one-line meaning per id (the labelling prompt is built from both), and the
# regular expressions IFEval makes of a row's kwargs (a row whose pattern does not compile cannot be checked) --

@dataclass(frozen=True)
class _Spec:
    meaning: str
    kwargs: dict[str, str]
    patterns: Callable[[dict], list[str]] = lambda kw: []


_SPECS = {
    "keywords:existence": _Spec("include every one of these keywords", {"keywords": "words"},
                                lambda kw: list(kw["keywords"])),
    "keywords:frequency": _Spec("use a word a number of times", {"keyword": "text", "frequency": "count",
                                                                 "relation": "relation"},
                                lambda kw: [kw["keyword"].strip()]),
    "keywords:forbidden_words": _Spec("do not use these words", {"forbidden_words": "words"},
                                      lambda kw: [keywords.forbidden_pattern(w) for w in kw["forbidden_words"]]),
    "keywords:letter_frequency": _Spec("use a letter a number of times", {
        "letter": "letter", "let_frequency": "count", "let_relation": "relation"}),
    "language:response_language": _Spec("answer only in this language", {"language": "language"}),
    "length_constraints:number_sentences": _Spec("a number of sentences", {"num_sentences": "count",
                                                                           "relation": "relation"}),
    "length_constraints:number_paragraphs": _Spec("exactly this many paragraphs separated by the markdown "
                                                  "divider ***", {"num_paragraphs": "count"}),
    "length_constraints:number_words": _Spec("a number of words", {"num_words": "count", "relation": "relation"}),
    "length_constraints:nth_paragraph_first_word": _Spec(
        "exactly num_paragraphs paragraphs separated by blank lines, paragraph nth_paragraph starting with "
        "first_word", {"num_paragraphs": "count", "nth_paragraph": "count", "first_word": "word"}),
    "detectable_content:number_placeholders": _Spec("at least this many placeholders in square brackets "
                                                    "like [address]", {"num_placeholders": "count"}),
    "detectable_content:postscript": _Spec("end with a postscript starting with this marker (e.g. P.S.)",
                                           {"postscript_marker": "text"},
                                           lambda kw: [content.postscript_pattern(kw["postscript_marker"])]),
    "detectable_format:number_bullet_lists": _Spec("exactly this many markdown bullet points",
                                                   {"num_bullets": "count"}),
    "detectable_format:constrained_response": _Spec(
        "answer with one of: " + ", ".join(f"'{o}'" for o in CONSTRAINED_OPTIONS), {}),
    "detectable_format:number_highlighted_sections": _Spec("at least this many sections highlighted with "
                                                           "markdown, like *highlighted*",
                                                           {"num_highlights": "count"}),
    "detectable_format:multiple_sections": _Spec("at least num_sections sections, each headed by "
                                                 "section_spliter and its number (e.g. Section 1)",
                                                 {"section_spliter": "word", "num_sections": "count"},
                                                 lambda kw: [format_.section_pattern(kw["section_spliter"])]),
    "detectable_format:json_format": _Spec("the whole answer is JSON", {}),
    "detectable_format:title": _Spec("include a title in double angle brackets, like <<title>>", {}),
    "combination:two_responses": _Spec("two different answers separated by six asterisks ******", {}),
    "combination:repeat_prompt": _Spec("first repeat the request word for word, then answer; prompt_to_repeat "
                                       "is the request to repeat, without the sentence asking for the repeat",
                                       {"prompt_to_repeat": "text"}),
    "startend:end_checker": _Spec("end with this exact phrase, nothing after it", {"end_phrase": "text"}),
    "change_case:capital_word_frequency": _Spec("a number of words in ALL CAPITALS", {
        "capital_frequency": "count", "capital_relation": "relation"}),
    "change_case:english_capital": _Spec("answer in English, all in capital letters", {}),
    "change_case:english_lowercase": _Spec("answer in English, all in lowercase letters", {}),
    "punctuation:no_comma": _Spec("use no commas at all", {}),
    "startend:quotation": _Spec("wrap the whole answer in double quotation marks", {}),
}
assert set(_SPECS) == set(_CHECKS)
INSTRUCTION_IDS: tuple[str, ...] = tuple(_SPECS)
