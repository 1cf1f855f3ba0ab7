"""Labels under constrained decoding: a model that writes gibberish (the tiny random chat model) still answers every
label mission and the constraint labelling in JSON that parses and validates against its schema, through the real
LocalLLM (outlines-core's index over the model's own vocabulary); the truncated flag says where max_new_tokens cut
an answer; the server client sends the schema as `response_format` where the server was found to honour it."""

from __future__ import annotations

import json

import pytest

from .conftest import REPO

TOKENIZER = REPO / "recipes" / "debug" / "tokenizer"
pytestmark = pytest.mark.slow  # a real (tiny) model decodes


@pytest.fixture(scope="module")
def local_llm(tmp_path_factory):
    from smolalign.gen.llms import LocalLLM
    from smolalign.model.write import init_model

    out = tmp_path_factory.mktemp("structured") / "tiny-chat"
    init_model("tiny", str(TOKENIZER), str(out), seed=0)
    llm = LocalLLM(model=str(out), torch_dtype="float32", device="cpu", token=None)
    llm.load()
    return llm


def answers(llm, inputs, max_new_tokens=200, temperature=1.0):
    outputs = llm.generate(inputs, max_new_tokens=max_new_tokens, temperature=temperature, do_sample=True)
    return [o["generations"][0] for o in outputs], [o["truncated"][0] for o in outputs]


def test_every_judge_mission_parses_from_a_gibberish_model(local_llm):
    from smolalign.gen.quality.labels import JUDGE_MISSIONS, mission_messages, mission_schema, parse_label
    from smolalign.gen.quality.spec import CATEGORIES

    row = {"instruction": "How do I sort a list in Python?",
           "conversation": [{"role": "user", "content": "How do I sort a list in Python?"},
                            {"role": "assistant", "content": "Use sorted()."}]}
    inputs = [(mission_messages(m, row, list(CATEGORIES)), mission_schema(m, list(CATEGORIES)))
              for m in JUDGE_MISSIONS for _ in range(2)]
    plain = [mission_messages("difficulty", row, list(CATEGORIES))]  # the same batch may hold a free row
    texts, truncated = answers(local_llm, inputs + plain)
    for (mission, text, cut) in zip([m for m in JUDGE_MISSIONS for _ in range(2)], texts, truncated):
        assert not cut, (mission, text)
        assert parse_label(mission, text, list(CATEGORIES)) is not None, (mission, text)
    assert parse_label("difficulty", texts[-1], list(CATEGORIES)) is None, "unconstrained, the model writes noise"


def test_constraint_labels_parse_and_name_known_instructions(local_llm):
    from smolalign.gen.constraints import INSTRUCTION_IDS, parse_constraint_labels
    from smolalign.gen.constraints.labels import LABELS_SCHEMA, MAX_INSTRUCTIONS

    # the query alone (the run sends the labelling prompt: ~3,000 tokens with this 512-token vocabulary)
    query = "Write a poem about rain in fewer than 50 words, all in lowercase, with no commas."
    inputs = [([{"role": "user", "content": query}], LABELS_SCHEMA)] * 3
    texts, truncated = answers(local_llm, inputs, max_new_tokens=400)
    for text, cut in zip(texts, truncated):
        assert not cut, text
        ids, kwargs = parse_constraint_labels(text)
        assert 1 <= len(ids) <= MAX_INSTRUCTIONS and set(ids) <= set(INSTRUCTION_IDS), text
        assert all(isinstance(k, dict) for k in kwargs)
        for value in (v for k in kwargs for v in k.values() if isinstance(v, int)):
            assert 0 <= value <= 9999  # counts are bounded (structured.COUNT)


def test_truncated_means_cut_at_max_new_tokens(local_llm):
    messages = [{"role": "user", "content": "Tell me a long story."}]
    texts, truncated = answers(local_llm, [messages], max_new_tokens=3)
    assert truncated == [True]
    schema = {"type": "object", "properties": {"ok": {"enum": ["yes"]}}, "required": ["ok"],
              "additionalProperties": False}
    texts, truncated = answers(local_llm, [(messages, schema)], max_new_tokens=40)
    assert json.loads(texts[0]) == {"ok": "yes"} and truncated == [False], "a complete JSON ends the turn"
