"""`smolalign eval`: figures on models whose behaviour is known (exact match 1 and 0, preference order, the loss
of a known next-token probability), batched scores equal to one-at-a-time ones, eval.json, the lm-eval hand-off
on a task YAML over local JSONL, and bad input found before the model loads."""

import json
import math
import sys

import pytest

from smolalign.errors import UsageError

from .conftest import DEBUG_DIR, assert_user_error, run_cli, write_jsonl
from .known_model import ANSWERS_CAT, bigram_model


@pytest.fixture(scope="module")
def cat_model(tmp_path_factory):
    """Always answers "cat", then <|im_end|>; past the stop token it would go on with "dog"."""
    return bigram_model(DEBUG_DIR / "tokenizer", tmp_path_factory.mktemp("known") / "cat", ANSWERS_CAT)


def task_rows(answer: str, n: int = 6) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"Name an animal, {i}"},
                          {"role": "assistant", "content": answer}]} for i in range(n)]


def ultrafeedback_rows(chosen: str, rejected: str, n: int = 5) -> list[dict]:
    """Hub-style rows: the prompt repeated inside chosen and rejected, plus a prompt column."""
    rows = []
    for i in range(n):
        user = {"role": "user", "content": f"Which animal, {i}?"}
        rows.append({"prompt": user["content"], "chosen": [user, {"role": "assistant", "content": chosen}],
                     "rejected": [user, {"role": "assistant", "content": rejected}], "score_chosen": 9.0})
    return rows


def test_exact_match_is_one_on_right_answers_and_zero_on_wrong(cat_model, tmp_path):
    from smolalign.eval.run import run_eval

    right = write_jsonl(tmp_path / "right.jsonl", task_rows("cat"))
    wrong = write_jsonl(tmp_path / "wrong.jsonl", task_rows("dog"))
    results = run_eval(str(cat_model), data=[str(right), str(wrong)])
    by_name = {entry["dataset"]: entry for entry in results["data"].values()}
    assert by_name[str(right)]["exact_match"] == 1.0
    assert by_name[str(wrong)]["exact_match"] == 0.0
    assert by_name[str(wrong)]["samples"][0]["reply"] == "cat", "stopped at <|im_end|>, before the 'dog' after it"
    assert {"loss", "perplexity"} <= set(by_name[str(right)]), "chat data also gets its loss"

    written = json.loads((cat_model / "eval.json").read_text())
    assert written["data"].keys() == results["data"].keys()
    pairs = write_jsonl(tmp_path / "pairs.jsonl", ultrafeedback_rows("cat", "dog"))
    run_eval(str(cat_model), data=[str(pairs)])
    again = json.loads((cat_model / "eval.json").read_text())
    assert set(written["data"]) < set(again["data"]), "a later evaluation keeps the earlier entries"


def test_preference_accuracy_follows_the_known_order(cat_model, tmp_path):
    from smolalign.eval.run import run_eval

    ordered = write_jsonl(tmp_path / "ordered.jsonl", ultrafeedback_rows("cat", "dog"))
    swapped = write_jsonl(tmp_path / "swapped.jsonl", ultrafeedback_rows("dog", "cat"))
    out = tmp_path / "figures"
    results = run_eval(str(cat_model), data=[str(ordered), str(swapped)], output=str(out))
    by_name = {entry["dataset"]: entry for entry in results["data"].values()}
    assert by_name[str(ordered)]["kind"] == "preference"
    assert by_name[str(ordered)]["preference_accuracy"] == 1.0
    assert by_name[str(swapped)]["preference_accuracy"] == 0.0
    assert by_name[str(ordered)]["mean_margin"] > 20 > -20 > by_name[str(swapped)]["mean_margin"]
    assert json.loads((out / "eval.json").read_text())["data"].keys() == results["data"].keys()


def test_loss_is_the_known_next_token_probability(tmp_path):
    """After each scored token's predecessor the model gives logit 3 to it and 0 to the other 511 tokens."""
    from smolalign.eval.run import run_eval

    model = bigram_model(DEBUG_DIR / "tokenizer", tmp_path / "soft", ANSWERS_CAT, scale=3.0)
    data = write_jsonl(tmp_path / "tasks.jsonl", task_rows("cat", n=4))
    entry = next(iter(run_eval(str(model), data=[str(data)], metrics=["loss"])["data"].values()))
    assert entry["tokens"] == 4 * 2, "assistant tokens only: 'cat' and its <|im_end|>"
    expected = math.log1p(511 * math.exp(-3.0))
    assert entry["loss"] == pytest.approx(expected, rel=1e-4)
    assert entry["perplexity"] == pytest.approx(math.exp(expected), rel=1e-4)
    assert "exact_match" not in entry, "--metric loss asks for the loss only"


def test_batched_scores_equal_one_sequence_at_a_time():
    """A random model (attention at work), sequences of different lengths: padding must change nothing."""
    import torch
    from transformers import AutoTokenizer

    from smolalign.data.formats import to_preference
    from smolalign.eval.metrics import generate_replies, preference_margins, text_loss
    from smolalign.model.build import build_model

    tokenizer = AutoTokenizer.from_pretrained(DEBUG_DIR / "tokenizer")
    tokenizer.eos_token = "<|im_end|>"
    model = build_model("tiny", tokenizer, seed=3)
    pairs = [to_preference(json.loads(line)) for line in list((DEBUG_DIR / "data/tasks-dpo/test.jsonl").open())[:8]]

    def logprob(prompt, completion):  # the plain way: one sequence, no padding, log-softmax over the vocabulary
        start = len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"])
        ids = torch.tensor([tokenizer.apply_chat_template(prompt + completion, return_dict=True)["input_ids"]])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        return float(logprobs.gather(1, ids[0, 1:, None])[start - 1:].sum())

    one_by_one = [logprob(p["prompt"], p["chosen"]) - logprob(p["prompt"], p["rejected"]) for p in pairs]
    assert preference_margins(model, tokenizer, pairs, batch_size=5) == pytest.approx(one_by_one, abs=1e-3)

    texts = [json.loads(line)["text"][:n] for line, n in zip((DEBUG_DIR / "data/pretrain/prose.jsonl").open(),
                                                              (40, 200, 90))]
    batched = text_loss(model, tokenizer, texts, batch_size=3)
    sums = []
    for text in texts:
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            sums.append((float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1), ids.shape[1] - 1))
    assert batched["tokens"] == sum(n for _, n in sums)
    assert batched["loss"] == pytest.approx(sum(s for s, _ in sums) / batched["tokens"], rel=1e-4)

    prompts = [p["prompt"] for p in pairs[:5]]
    assert generate_replies(model, tokenizer, prompts, max_new_tokens=5, batch_size=5) == \
        generate_replies(model, tokenizer, prompts, max_new_tokens=5, batch_size=1), "left padding changes nothing"


def test_bad_input_is_found_before_the_model_loads(cat_model, tmp_path):
    from smolalign.eval.run import run_eval

    chat = write_jsonl(tmp_path / "chat.jsonl", task_rows("cat", n=2))
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"question": "q", "label": "a"}])
    before = (cat_model / "eval.json").read_text() if (cat_model / "eval.json").exists() else None
    cases = [
        (dict(), "nothing to evaluate"),
        (dict(data=[str(chat)], metrics=["accuracy"]), "unknown metric 'accuracy'"),
        (dict(data=[str(chat)], metrics=["preference"]), "does not apply to chat data"),
        (dict(data=[str(odd)]), "--text-column"),
        (dict(data=[str(chat)], split="test"), "one split"),
        (dict(data=[str(tmp_path / "missing.jsonl")]), "missing.jsonl"),
        (dict(data=[str(chat)], limit=0), "--limit=0"),
        (dict(data=[str(chat)], output=str(chat)), "is a file"),
    ]
    for kwargs, message in cases:
        with pytest.raises(UsageError, match=message.replace("(", r"\(")):
            run_eval(str(cat_model), **kwargs)
    with pytest.raises(UsageError, match="not a local directory.*--output"):
        run_eval("tiny", data=[str(chat)])
    after = (cat_model / "eval.json").read_text() if (cat_model / "eval.json").exists() else None
    assert before == after, "nothing written"


def test_tasks_without_lm_eval_say_how_to_install(cat_model, monkeypatch):
    """Injected fault: lm_eval is made unimportable (a None entry in sys.modules) to stand for a missing extra."""
    from smolalign.eval.run import run_eval

    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(UsageError, match=r"pip install 'smolalign\[eval\]'"):
        run_eval(str(cat_model), tasks=["gsm8k"])


def test_tasks_hand_off_to_lm_eval_on_a_local_task(cat_model, tmp_path):
    pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed (pip install 'smolalign[eval]')")
    from smolalign.eval.run import run_eval

    data = write_jsonl(tmp_path / "animals.jsonl", [{"question": "Say cat", "answer": "cat"},
                                                     {"question": "Say dog", "answer": "dog"},
                                                     {"question": "Say cat again", "answer": "cat"}])
    task = tmp_path / "animals.yaml"
    task.write_text(
        "task: smol_animals\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        "output_type: generate_until\ndoc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n"
        "generation_kwargs:\n  until: ['<|im_end|>']\n  do_sample: false\n  max_gen_toks: 8\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n")
    out = tmp_path / "out"
    results = run_eval(str(cat_model), tasks=[str(task)], output=str(out))
    assert results["tasks"]["smol_animals"]["exact_match"] == pytest.approx(2 / 3)
    assert json.loads((out / "eval.json").read_text())["tasks"]["smol_animals"]["exact_match"] == pytest.approx(2 / 3)
    with pytest.raises(UsageError, match="does not exist"):
        run_eval(str(cat_model), tasks=[str(tmp_path / "no_such_task.yaml")], output=str(out))


def test_cli_eval_prints_a_table_and_writes_eval_json(cat_model, tmp_path):
    right = write_jsonl(tmp_path / "right.jsonl", task_rows("cat", n=3))
    out = tmp_path / "cli"
    result = run_cli("eval", cat_model, "--data", right, "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exact_match" in result.stdout and "1.0000" in result.stdout
    assert json.loads((out / "eval.json").read_text())["data"][f"{right} [train]"]["exact_match"] == 1.0

    assert_user_error(run_cli("eval", cat_model, "--data", right, "--metric", "preference"))
