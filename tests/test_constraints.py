"""The smol-constraints filter around the checkers: label validation (as IFEval accepts kwargs) and conflicts,
parsing an LLM's labels, the labelling prompt, and 10-gram decontamination. The checkers' verdicts are in
test_constraints_cases.py."""

from __future__ import annotations

import json

import pytest

from smolalign.errors import UsageError
from smolalign.gen.constraints import (
    CONFLICTS, INSTRUCTION_IDS, LABELLING_PROMPT, LANGUAGES, check_response, detect_language, labelling_prompt,
    parse_constraint_labels, passes_strict, validate_instructions,
)
from smolalign.gen.decontaminate import load_against, ngram_decontaminate

from .conftest import write_jsonl
from .test_constraints_cases import CASES

# One instruction's kwargs: (id, kwargs, what IFEval's build_description and check do with them, whether our
# validator accepts them). IFEval "accepts" (keeps them as given and checks without an error), "rejects" (raises)
# or draws a "random" value instead. test_constraints_ifeval.py confirms the third column against lm-eval.
KWARGS_CASES = [
    ("keywords:frequency", {"keyword": "a", "frequency": 0, "relation": "at least"}, "accepts", True),
    ("length_constraints:number_words", {"num_words": 0, "relation": "less than"}, "accepts", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 0}, "accepts", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 0, "capital_relation": "less than"}, "accepts",
     True),
    ("language:response_language", {"language": "fi"}, "accepts", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "accepts", True),
    ("keywords:existence", {"keywords": ["U.S.", "tea"]}, "accepts", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2,
                                                     "first_word": "so then"}, "accepts", True),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 3}, "accepts", True),
    ("detectable_content:postscript", {"postscript_marker": "Note:"}, "accepts", True),
    ("punctuation:no_comma", {"num_words": None, "keywords": None}, "accepts", True),  # IFEval rows list nulls
    ("language:response_language", {"language": "zh"}, "rejects", False),
    ("language:response_language", {"language": "EN"}, "rejects", False),
    ("language:response_language", {"language": "klingon"}, "rejects", False),
    ("combination:repeat_prompt", {}, "rejects", False),
    ("combination:repeat_prompt", {"prompt_to_repeat": ""}, "rejects", False),
    ("keywords:frequency", {"keyword": "a", "frequency": 3, "relation": "more than"}, "rejects", False),
    ("length_constraints:number_words", {"num_words": "3", "relation": "at least"}, "rejects", False),
    ("punctuation:no_comma", {"num_words": 3}, "rejects", False),
    ("keywords:existence", {"keywords": ["+1"]}, "rejects", False),
    ("keywords:existence", {"keywords": [3]}, "rejects", False),
    ("keywords:forbidden_words", {"forbidden_words": ["(tea"]}, "rejects", False),
    ("detectable_format:multiple_sections", {"section_spliter": "Section(", "num_sections": 2}, "rejects", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S.("}, "rejects", False),
    ("startend:end_checker", {"end_phrase": 5}, "rejects", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": 7},
     "rejects", False),
    ("keywords:letter_frequency", {"letter": "ab", "let_frequency": 2, "let_relation": "at least"}, "random", False),
    ("keywords:frequency", {"keyword": "a", "frequency": -1, "relation": "at least"}, "random", False),
    ("length_constraints:number_words", {"relation": "at least"}, "random", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "so"},
     "random", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 0, "first_word": "so"},
     "random", False),
    ("keywords:existence", {"keywords": []}, "random", False),
    ("language:response_language", {}, "random", False),
    # the issue asks for "#" to be accepted; IFEval would check a random letter, we count "#"
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 2, "let_relation": "at least"}, "random", True),
    # stricter than IFEval on purpose (validation.py says why): bool and float counts, a string for a list,
    # empty strings, a negative capital_frequency
    ("length_constraints:number_words", {"num_words": True, "relation": "at least"}, "accepts", False),
    ("length_constraints:number_words", {"num_words": 2.5, "relation": "at least"}, "accepts", False),
    ("keywords:existence", {"keywords": "tea"}, "accepts", False),
    ("keywords:existence", {"keywords": ["tea", ""]}, "accepts", False),
    ("startend:end_checker", {"end_phrase": ""}, "accepts", False),
    ("change_case:capital_word_frequency", {"capital_frequency": -2, "capital_relation": "at least"}, "accepts",
     False),
]


@pytest.mark.parametrize("iid, kwargs, ifeval, accepted", KWARGS_CASES, ids=lambda v: str(v)[:40])
def test_validator_accepts_what_ifeval_keeps_as_given(iid, kwargs, ifeval, accepted):
    assert (validate_instructions([iid], [kwargs]) is None) == accepted


def test_the_validator_departs_from_ifeval_only_where_documented():
    departures = [kwargs for _, kwargs, ifeval, accepted in KWARGS_CASES if accepted != (ifeval == "accepts")]
    assert departures == [{"letter": "#", "let_frequency": 2, "let_relation": "at least"},
                          {"num_words": True, "relation": "at least"}, {"num_words": 2.5, "relation": "at least"},
                          {"keywords": "tea"}, {"keywords": ["tea", ""]}, {"end_phrase": ""},
                          {"capital_frequency": -2, "capital_relation": "at least"}]


def test_a_repeated_id_is_accepted_as_in_ifeval():
    assert validate_instructions(["punctuation:no_comma", "punctuation:no_comma"], [{}, {}]) is None
    assert validate_instructions(["language:response_language"] * 2, [{"language": "fr"}, {"language": "de"}]) is None


def test_repeat_prompt_needs_its_prompt_to_repeat_and_ignores_the_prompt():
    ids = ["combination:repeat_prompt"]
    assert "missing kwarg 'prompt_to_repeat'" in validate_instructions(ids, [{}])
    with pytest.raises(ValueError, match="prompt_to_repeat"):
        check_response("Say hi. Hi!", ids, [{}], prompt="Say hi.")
    kwargs = [{"prompt_to_repeat": "Say hi."}]
    assert check_response("Say hi. Hi!", ids, kwargs, prompt="Something else.") == [True]


def test_passes_strict_needs_every_instruction():
    ids = ["punctuation:no_comma", "startend:end_checker", "keywords:existence"]
    kwargs = [{}, {"end_phrase": "Is there anything else?"}, {"keywords": ["tea"]}]
    good = "Green tea is calming. Is there anything else?"
    assert check_response(good, ids, kwargs) == [True, True, True] and passes_strict(good, ids, kwargs)
    bad = "Green tea, oolong. Is there anything else?"
    assert check_response(bad, ids, kwargs) == [False, True, True] and not passes_strict(bad, ids, kwargs)
    assert passes_strict("Green teapot. Is there anything else?", ids, kwargs)
    assert not passes_strict("Green teapot. Is there anything else?", ids, kwargs, reading="strict")


def test_language_codes_are_known_to_langdetect_and_detection_is_repeatable():
    import langdetect.detector_factory as factory

    factory.init_factory()
    assert len(LANGUAGES) == 30 and set(LANGUAGES) <= set(factory._factory.get_lang_list())
    fr = "La rivière traverse doucement la vieille ville et les enfants jouent sur ses rives chaque été."
    assert {detect_language(fr) for _ in range(5)} == {"fr"} and detect_language("12 34 !!") is None


@pytest.mark.parametrize("ids, kwargs, reason", [
    (["keywords:nonsense"], [{}], "unknown instruction id"),
    (["keywords:frequency"], [{"keyword": "a", "frequency": "3", "relation": "at least"}], "whole number"),
    (["keywords:frequency"], [{"keyword": "a", "frequency": 3, "relation": "more than"}], "'less than' or"),
    (["length_constraints:number_words"], [{"num_words": True, "relation": "at least"}], "whole number"),
    (["length_constraints:number_words"], [{"relation": "at least"}], "missing kwarg 'num_words'"),
    (["punctuation:no_comma"], [{"num_words": 3}], "unexpected kwarg 'num_words'"),
    (["keywords:existence"], [{"keywords": []}], "non-empty list"),
    (["keywords:existence"], [{"keywords": "tea"}], "non-empty list"),
    (["keywords:letter_frequency"], [{"letter": "ab", "let_frequency": 2, "let_relation": "at least"}],
     "one character"),
    (["language:response_language"], [{"language": "klingon"}], "one of the codes en, es"),
    (["length_constraints:nth_paragraph_first_word"], [{"num_paragraphs": 2, "nth_paragraph": 3,
                                                        "first_word": "so"}], "not within 1..2"),
    (["punctuation:no_comma"], ["not a dict"], "must be an object"),
    (["punctuation:no_comma"], [], "same length"),
    ([], [], "no instructions"),
    (["change_case:english_lowercase", "change_case:english_capital"], [{}, {}], "conflicting"),
    (["combination:two_responses", "detectable_format:json_format"], [{}, {}], "conflicting"),
    (["length_constraints:number_paragraphs", "length_constraints:nth_paragraph_first_word"],
     [{"num_paragraphs": 2}, {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "so"}], "conflicting"),
    (["language:response_language", "change_case:english_lowercase"], [{"language": "de"}, {}], "English-only"),
    (["change_case:english_lowercase", "change_case:capital_word_frequency"],
     [{}, {"capital_frequency": 2, "capital_relation": "at least"}], "capital_word_frequency"),
    (["keywords:existence", "keywords:forbidden_words"], [{"keywords": ["Tea"]}, {"forbidden_words": ["tea"]}],
     "required and forbidden"),
    (["keywords:frequency", "keywords:frequency"], [{"keyword": "a", "frequency": 3, "relation": "less than"},
                                                    {"keyword": "A", "frequency": 3, "relation": "at least"}],
     "at least 3 and less than 3"),
    (["keywords:existence"], [{"keywords": ["+1"]}], "not a valid regular expression"),
])
def test_validate_rejects_bad_kwargs_and_conflicts(ids, kwargs, reason):
    problem = validate_instructions(ids, kwargs)
    assert problem is not None and reason in problem, problem
    if ids and len(ids) == len(kwargs):
        with pytest.raises(ValueError):
            check_response("anything", ids, kwargs)


def test_validate_accepts_compatible_labels_and_null_kwargs():
    assert validate_instructions(["language:response_language", "change_case:english_lowercase"],
                                 [{"language": "en"}, {}]) is None
    assert validate_instructions(["keywords:frequency", "keywords:frequency"],
                                 [{"keyword": "a", "frequency": 5, "relation": "less than"},
                                  {"keyword": "a", "frequency": 2, "relation": "at least"}]) is None
    # IFEval's own rows list every kwarg name with null for the unused ones
    assert validate_instructions(["punctuation:no_comma"], [{"num_words": None, "keywords": None}]) is None
    assert all(len(pair) == 2 and pair <= set(INSTRUCTION_IDS) for pair in CONFLICTS)


def test_parse_labels_plain_fenced_prose_and_ifeval_layout():
    labels = {"instructions": [{"id": "punctuation:no_comma", "kwargs": {}},
                               {"id": "length_constraints:number_words",
                                "kwargs": {"num_words": 50, "relation": "less than"}}]}
    expected = (["punctuation:no_comma", "length_constraints:number_words"],
                [{}, {"num_words": 50, "relation": "less than"}])
    assert parse_constraint_labels(json.dumps(labels)) == expected
    fenced = f"Sure, here are the labels:\n```json\n{json.dumps(labels, indent=2)}\n```\nLet me know!"
    assert parse_constraint_labels(fenced) == expected
    prose = f"The constraints [as asked] are {json.dumps(labels)} and nothing else."
    assert parse_constraint_labels(prose) == expected
    ifeval = {"instruction_id_list": expected[0], "kwargs": expected[1]}
    assert parse_constraint_labels(json.dumps(ifeval)) == expected
    assert parse_constraint_labels('{"instructions": []}') == ([], [])


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("I could not find any constraints, sorry.", "no JSON"),
    ('```json\n{"instructions": [{"id": "punctuation:no_comma",\n```', "no JSON"),
    ('{"labels": ["punctuation:no_comma"]}', "no 'instructions'"),
    ('{"instructions": [{"kwargs": {}}]}', "no string 'id'"),
    ('{"instructions": [{"id": "punctuation:no_comma", "kwargs": [1]}]}', "not an object"),
])
def test_parse_labels_rejects_garbage(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_constraint_labels(text)


def test_labelling_prompt_names_every_id_and_kwarg():
    prompt = labelling_prompt("Write a haiku without commas.")
    assert prompt.endswith("User query:\nWrite a haiku without commas.") and "{query}" in LABELLING_PROMPT
    for iid, kwargs, *_ in CASES:
        assert f"- {iid}:" in prompt and all(f"{name}:" in prompt for name in kwargs)


EVAL = ["Write a 300+ word summary of the wikipedia page about the history of the Roman empire, "
        "without using any commas."]


def test_decontamination_drops_a_shared_10gram_and_keeps_the_rest():
    copied = "Please, WRITE a 300+ word summary of the Wikipedia page -- about the history of Rome."
    near = "Write a 300 word summary of the wikipedia page on the fall of the Roman empire."  # 9 words shared
    fresh = "Tell me about the history of the Roman empire in three sentences."
    assert ngram_decontaminate([copied, near, fresh, "short"], EVAL) == [False, True, True, True]
    assert ngram_decontaminate([near], EVAL, n=5) == [False]
    with pytest.raises(ValueError):
        ngram_decontaminate([near], EVAL, n=0)


def test_load_against_guesses_the_text_column(tmp_path):
    rows = [{"key": 1, "instruction": EVAL[0]}, {"key": 2, "instruction": "Another prompt."}]
    assert load_against(str(write_jsonl(tmp_path / "first_string.jsonl", rows))) == [EVAL[0], "Another prompt."]
    rows = [{"text": "plain text", "prompt": EVAL[0]}]
    assert load_against(str(write_jsonl(tmp_path / "prompt.jsonl", rows))) == [EVAL[0]]
    assert load_against(str(write_jsonl(tmp_path / "named.jsonl", rows)), column="text") == ["plain text"]
    with pytest.raises(UsageError, match="no text column 'missing'"):
        load_against(str(tmp_path / "named.jsonl"), column="missing")
    with pytest.raises(UsageError, match="no text column"):
        load_against(str(write_jsonl(tmp_path / "numbers.jsonl", [{"a": 1, "b": [2]}])))
