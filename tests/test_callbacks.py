"""Metrics log and progress bar: one process writes, one definition of tokens/s, resumes say what they cover."""

import json
import threading

import pytest

from .conftest import DEBUG_DIR


def tiny_trainer(out, callbacks, **training):
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from smolalign.model.build import build_model
    from smolalign.train.templates import prepare_chat_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(DEBUG_DIR / "tokenizer")
    prepare_chat_tokenizer(tokenizer)
    rows = [{"messages": [{"role": "user", "content": f"Repeat the word sun {n} times."},
                          {"role": "assistant", "content": " ".join(["sun"] * n)}]} for n in range(1, 17)]
    settings = dict(output_dir=str(out), bf16=False, activation_checkpointing=False, report_to=[], max_length=64,
                    per_device_train_batch_size=2, max_steps=4, logging_steps=1, save_strategy="no", seed=0,
                    include_num_input_tokens_seen="non_padding", dataloader_pin_memory=False)
    args = SFTConfig(**{**settings, **training})
    trainer = SFTTrainer(model=build_model("tiny", tokenizer), args=args, processing_class=tokenizer,
                         train_dataset=datasets.Dataset.from_list(rows))
    for callback in callbacks:
        trainer.add_callback(callback)
    return trainer


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def args_in(out):
    from types import SimpleNamespace

    return SimpleNamespace(output_dir=str(out))


def state_at(step: int, main: bool):
    from transformers import TrainerState

    state = TrainerState(global_step=step, is_world_process_zero=main)
    state.num_input_tokens_seen = 100 * step
    return state


@pytest.mark.parametrize("resume_step", [None, 10])
def test_only_the_main_process_touches_the_metrics_log(tmp_path, resume_step):
    from smolalign.train.callbacks import MetricsLog

    before = "".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (5, 10, 15))
    (tmp_path / "metrics.jsonl").write_text(before)
    for main in (False, True):  # another rank first: it must leave the file alone
        log = MetricsLog(resume_step)
        log.on_train_begin(args_in(tmp_path), state_at(resume_step or 0, main), None)
        if not main:
            assert (tmp_path / "metrics.jsonl").read_text() == before
        log.on_log(args_in(tmp_path), state_at(resume_step or 0, main), None, logs={"loss": 2.0})
        if not main:
            assert (tmp_path / "metrics.jsonl").read_text() == before
    steps = [(r["step"], r.get("event")) for r in records(tmp_path)]
    assert steps == ([(0, None)] if resume_step is None else [(5, None), (10, None), (10, "resumed"), (10, None)])


def test_progress_bar_summary_and_log_share_one_tokens_per_second(tmp_path):
    from smolalign.train.callbacks import MetricsLog, RichProgress, tokens_per_second

    bar = RichProgress()
    shown = []
    trainer = tiny_trainer(tmp_path, [MetricsLog(), bar])
    original = bar.on_log

    def watch(*args, **kwargs):
        original(*args, **kwargs)
        shown.append((bar.fields["tps"], dict(kwargs.get("logs") or {})))
        # no redraw thread competing with torch's threads for the cores: the loop redraws the bar itself
        assert not [t for t in threading.enumerate() if "Refresh" in type(t).__name__]

    bar.on_log = watch
    result = trainer.train()
    step_logs = [(text, logs) for text, logs in shown if "loss" in logs]
    assert len(step_logs) == 4
    for text, logs in step_logs:  # the bar shows the Trainer's own train_tokens_per_second, not a rate of its own
        # (the same definition, read from the clock a moment apart on a loaded machine: within half a percent)
        assert float(text.replace(",", "")) == pytest.approx(logs["train_tokens_per_second"], rel=5e-3, abs=1)
    end = records(tmp_path)[-1]
    summary = tokens_per_second(trainer.state, result.metrics["train_runtime"])
    assert summary == pytest.approx(trainer.state.num_input_tokens_seen / result.metrics["train_runtime"])
    assert end["train_tokens_per_second"] == pytest.approx(summary)
    assert "since_step" not in end


def test_resumed_log_says_what_its_totals_cover(tmp_path):
    from smolalign.train.callbacks import MetricsLog

    first = tiny_trainer(tmp_path, [MetricsLog()], save_strategy="steps", save_steps=2)
    first.train()
    seen_at_checkpoint = next(r["tokens_seen"] for r in records(tmp_path) if r["step"] == 2 and "loss" in r)
    # the interrupted run had logged past its checkpoint: those lines go, the resumed run logs them again
    resumed = tiny_trainer(tmp_path, [MetricsLog(resume_step=2)])
    result = resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    lines = records(tmp_path)
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3, 4]
    assert {"step": 2, "event": "resumed", "tokens_seen": seen_at_checkpoint} in lines
    end = lines[-1]
    assert end["since_step"] == 2
    session = resumed.state.num_input_tokens_seen - seen_at_checkpoint
    assert end["train_tokens_per_second"] == pytest.approx(session / result.metrics["train_runtime"])
