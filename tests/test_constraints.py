"""The smol-constraints filter: each IFEval instruction id on hand-written passing and failing answers, label
validation and conflicts, parsing an LLM's labels, and 10-gram decontamination."""

from __future__ import annotations

import json

import pytest

from smolalign.errors import UsageError
from smolalign.gen.constraints import (
    CONFLICTS, INSTRUCTION_IDS, LABELLING_PROMPT, LANGUAGES, check_response, detect_language, labelling_prompt,
    parse_constraint_labels, passes_strict, split_sentences, validate_instructions,
)
from smolalign.gen.decontaminate import load_against, ngram_decontaminate

from .conftest import write_jsonl

EN = "The river runs quietly through the old town and the children play on its banks every summer."
FR = "La rivière traverse doucement la vieille ville et les enfants jouent sur ses rives chaque été."

# id -> (kwargs, [passing responses], [failing responses])
CASES = {
    "keywords:existence": ({"keywords": ["river", "summer light"]},
                           ["A River under the summer  light."], ["A riverbank in summer.", "No keywords here."]),
    "keywords:frequency": ({"keyword": "blue", "frequency": 3, "relation": "at least"},
                           ["Blue sky, blue sea, BLUE boat."], ["Blue sky, blue sea, bluebird."]),
    "keywords:forbidden_words": ({"forbidden_words": ["very", "really"]},
                                 ["An everyday answer, every word chosen."], ["It is Very good."]),
    "keywords:letter_frequency": ({"letter": "z", "let_frequency": 3, "let_relation": "less than"},
                                  ["Zebras graze.", "No such letter."], ["Zany zebras zigzag."]),
    "language:response_language": ({"language": "fr"}, [FR], [EN]),
    "length_constraints:number_sentences": ({"num_sentences": 3, "relation": "less than"},
                                            ["Dr. Smith left at 3.30 p.m. today. He was tired!"],
                                            ["One. Two! Three? Four."]),
    "length_constraints:number_paragraphs": ({"num_paragraphs": 3},
                                             ["First part.\n***\nSecond part.\n***\nThird part.\n"],
                                             ["First.\n***\nSecond.", "One.\n***\n\n***\nTwo."]),
    "length_constraints:number_words": ({"num_words": 5, "relation": "at least"},
                                        ["Don't stop me now, please."], ["Too few words here."]),
    "length_constraints:nth_paragraph_first_word": (
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"},
        ["Cats sleep a lot.\n\n**However,** dogs do too."],
        ["Cats sleep a lot.\n\nDogs do too.", "Cats.\n\nHowever dogs.\n\nBirds."]),
    "detectable_content:number_placeholders": ({"num_placeholders": 2},
                                               ["Dear [name], meet me at [address]."],
                                               ["Dear [name], see [the docs](http://x)."]),
    "detectable_content:postscript": ({"postscript_marker": "P.S."},
                                      ["Thanks for reading.\n\nP. S. Bring snacks."],
                                      ["Thanks for reading, PS bring snacks."]),
    "detectable_format:number_bullet_lists": ({"num_bullets": 2},
                                              ["Two points:\n* first\n- second\n***\nEnd."],
                                              ["* one\n* two\n* three", "Just prose, *no* list."]),
    "detectable_format:constrained_response": ({}, ["My answer is maybe."], ["My answer is yes", "Yes."]),
    "detectable_format:number_highlighted_sections": ({"num_highlights": 2},
                                                      ["* item with *one* and **two** highlights"],
                                                      ["* item with *one* highlight", "Empty ** and * * marks."]),
    "detectable_format:multiple_sections": ({"section_spliter": "Section", "num_sections": 2},
                                            ["Section 1\nIntro.\n\n## Section 2\nBody."],
                                            ["Section 1\nIntro.\n\nsection 2\nBody.", "Section A\nSection B"]),
    "detectable_format:json_format": ({}, ['{"a": [1, 2]}', '```json\n[{"a": 1}]\n```'],
                                      ['Here is JSON: {"a": 1}', '"just a string"']),
    "detectable_format:title": ({}, ["<<Ode to Rain>>\nIt rains."], ["<< >>\nIt rains.", "<Ode>"]),
    "combination:two_responses": ({}, ["Answer one.\n******\nAnswer two."],
                                  ["Same.\n******\nSame.", "A\n******\nB\n******\nC", "A\n*******\nB"]),
    "combination:repeat_prompt": ({"prompt_to_repeat": "Name a colour."},
                                  ["name a colour. Red."], ["Red. Name a colour.", "Name a colour."]),
    "startend:end_checker": ({"end_phrase": "Any other questions?"},
                             ["Done here. any other questions?  \n"], ["Any other questions? Bye."]),
    "change_case:capital_word_frequency": ({"capital_frequency": 2, "capital_relation": "at least"},
                                           ["This is VERY, VERY important."], ["This is Very important."]),
    "change_case:english_capital": ({}, [EN.upper()], [EN, FR.upper(), "1234 !!"]),
    "change_case:english_lowercase": ({}, [EN.lower()], [EN, FR.lower()]),
    "punctuation:no_comma": ({}, ["No commas here at all."], ["One, two.", "中文\uff0c逗号"]),
    "startend:quotation": ({}, ['  "All wrapped up."\n', "\u201cCurly quotes.\u201d"], ['"Half wrapped.', '"']),
}


def test_cases_cover_every_instruction_id():
    assert len(INSTRUCTION_IDS) == 25 and set(CASES) == set(INSTRUCTION_IDS)


@pytest.mark.parametrize("iid", INSTRUCTION_IDS)
def test_each_instruction_passes_and_fails(iid):
    kwargs, passing, failing = CASES[iid]
    assert validate_instructions([iid], [kwargs]) is None
    for response in passing:
        assert check_response(response, [iid], [kwargs]) == [True], response
    for response in failing:
        assert check_response(response, [iid], [kwargs]) == [False], response


def test_relations_and_boundaries():
    words = lambda relation: [{"num_words": 4, "relation": relation}]  # noqa: E731
    assert check_response("one two three four", ["length_constraints:number_words"], words("at least")) == [True]
    assert check_response("one two three four", ["length_constraints:number_words"], words("less than")) == [False]
    assert check_response("one two three", ["length_constraints:number_words"], words("less than")) == [True]
    assert split_sentences("Dr. Smith came at 3.30 today. He left.\n\nA heading\n\nThe end") == [
        "Dr. Smith came at 3.30 today.", "He left.", "A heading", "The end"]


def test_repeat_prompt_falls_back_to_the_prompt():
    ids, kwargs = ["combination:repeat_prompt"], [{}]
    assert check_response("Say hi. Hi!", ids, kwargs, prompt="Say hi.") == [True]
    assert check_response("Hi! Say hi.", ids, kwargs, prompt="Say hi.") == [False]
    with pytest.raises(ValueError, match="prompt_to_repeat"):
        check_response("Say hi. Hi!", ids, kwargs)


def test_passes_strict_needs_every_instruction():
    ids = ["punctuation:no_comma", "startend:end_checker", "keywords:existence"]
    kwargs = [{}, {"end_phrase": "Is there anything else?"}, {"keywords": ["tea"]}]
    good = "Green tea is calming. Is there anything else?"
    assert check_response(good, ids, kwargs) == [True, True, True] and passes_strict(good, ids, kwargs)
    bad = "Green tea, oolong. Is there anything else?"
    assert check_response(bad, ids, kwargs) == [False, True, True] and not passes_strict(bad, ids, kwargs)


def test_language_codes_match_langdetect_and_detection_is_repeatable():
    import langdetect.detector_factory as factory

    factory.init_factory()
    known = set(factory._factory.get_lang_list())
    assert LANGUAGES - {"zh"} == known
    assert {detect_language(FR) for _ in range(5)} == {"fr"} and detect_language("12 34 !!") is None


@pytest.mark.parametrize("ids, kwargs, reason", [
    (["keywords:nonsense"], [{}], "unknown instruction id"),
    (["keywords:frequency"], [{"keyword": "a", "frequency": "3", "relation": "at least"}], "positive integer"),
    (["keywords:frequency"], [{"keyword": "a", "frequency": 3, "relation": "more than"}], "'less than' or"),
    (["length_constraints:number_words"], [{"num_words": True, "relation": "at least"}], "positive integer"),
    (["length_constraints:number_words"], [{"num_words": 0, "relation": "at least"}], "positive integer"),
    (["length_constraints:number_words"], [{"relation": "at least"}], "missing kwarg 'num_words'"),
    (["punctuation:no_comma"], [{"num_words": 3}], "unexpected kwarg 'num_words'"),
    (["keywords:existence"], [{"keywords": []}], "non-empty list"),
    (["keywords:existence"], [{"keywords": "tea"}], "non-empty list"),
    (["keywords:letter_frequency"], [{"letter": "ab", "let_frequency": 2, "let_relation": "at least"}],
     "one letter"),
    (["language:response_language"], [{"language": "klingon"}], "ISO 639-1"),
    (["length_constraints:nth_paragraph_first_word"], [{"num_paragraphs": 2, "nth_paragraph": 3,
                                                        "first_word": "so"}], "past num_paragraphs"),
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
    (["punctuation:no_comma", "punctuation:no_comma"], [{}, {}], "given twice"),
])
def test_validate_rejects_bad_kwargs_and_conflicts(ids, kwargs, reason):
    problem = validate_instructions(ids, kwargs)
    assert problem is not None and reason in problem, problem
    if ids and len(ids) == len(kwargs):
        with pytest.raises(ValueError):
            check_response("anything", ids, kwargs)


def test_validate_accepts_compatible_labels_and_null_kwargs():
    assert validate_instructions(["language:response_language", "change_case:english_lowercase"],
                                 [{"language": "EN"}, {}]) is None
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
    for iid, (kwargs, _, _) in CASES.items():
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
