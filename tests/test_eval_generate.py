"""Continuous batching (eval/generate.py) against `model.generate` on each prompt alone, token for token: a random
model whose rows stop at different steps, with fewer slots than prompts, so rows leave, new prompts join the
running cache and unused columns are cut."""

from __future__ import annotations

import pytest

from .conftest import DEBUG_DIR

LIMIT = 30


@pytest.fixture(scope="module")
def lively_model():
    """The tiny preset with weights drawn wide (std 0.2), so its greedy tokens vary instead of repeating one."""
    import torch
    from transformers import AutoTokenizer

    from smolalign.model.build import build_model

    tokenizer = AutoTokenizer.from_pretrained(DEBUG_DIR / "tokenizer")
    tokenizer.eos_token = "<|im_end|>"
    model = build_model("tiny", tokenizer, seed=3).eval()
    draw = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() > 1:
                weight.normal_(0, 0.2, generator=draw)
    return model, tokenizer


def alone(model, ids: list[int], stops: set[int]) -> tuple[list[int], bool]:
    import torch

    out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=LIMIT, do_sample=False, eos_token_id=list(stops),
                         pad_token_id=0)[0, len(ids):].tolist()
    for position, token in enumerate(out):
        if token in stops:
            return out[:position], False
    return out, True


def test_continuous_batching_gives_each_prompt_the_tokens_it_gets_alone(lively_model):
    from smolalign.eval.generate import greedy_stream
    from smolalign.eval.metrics import chat_prompt_ids
    from smolalign.eval.tasks.ifeval import load_prompts

    model, tokenizer = lively_model
    prompts = [chat_prompt_ids(tokenizer, [{"role": "user", "content": r["prompt"]}]) for r in load_prompts(12)]
    stops = {tokenizer.eos_token_id, 203, 424, 46}  # tokens this model emits at different steps of different rows
    expected = [alone(model, ids, stops) for ids in prompts]
    assert len({len(tokens) for tokens, _ in expected}) >= 4 and any(cut for _, cut in expected), \
        "rows must stop at different steps (and some at the limit) for the slots to turn over"

    finished = list(greedy_stream(model, prompts, LIMIT, stops, pad=0, slots=4))
    assert sorted(index for index, _, _ in finished) == list(range(12)), "every prompt answered once"
    assert {index: (tokens, cut) for index, tokens, cut in finished} == dict(enumerate(expected))
    started = sorted(range(12), key=lambda i: -len(prompts[i]))
    assert finished[0][0] in started[:4], "the longest prompts start first"
    assert [index for index, _, _ in finished] != started, "rows leave as they stop, not in the order they came"
