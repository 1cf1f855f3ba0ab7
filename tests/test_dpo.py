"""`smolalign dpo` with the real DPOTrainer: learning on held-out pairs, hub-layout data, the reference model
(loaded from the model's path as TRL does under sharding), merging a saved adapter, two processes, SIGKILL and
resume, bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from smolalign.data.formats import to_preference
from smolalign.data.debug_tasks import preference_rows

from .conftest import DEBUG_DIR, assert_user_error, run_cli, write_jsonl


def held_out_pairs():
    return [to_preference(json.loads(line)) for line in (DEBUG_DIR / "data/tasks-dpo/test.jsonl").open()]


@pytest.fixture(scope="module")
def weak_sft(tmp_path_factory):
    """A short SFT run: a starting point that still prefers some wrong answers, as real SFT models do. Every
    test here starts from it: trained once for the module, and quicker than the full debug SFT."""
    out = tmp_path_factory.mktemp("runs") / "weak-sft"
    result = run_cli("sft", "debug/sft", f"training.output_dir={out}", "training.max_steps=60",
                     "training.save_strategy=no", "training.report_to=[]")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_debug_recipe_raises_preference_accuracy(tmp_path, weak_sft):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smolalign.eval.metrics import preference_accuracy

    out = tmp_path / "dpo"
    result = run_cli("dpo", "debug/dpo", "--model", weak_sft, f"training.output_dir={out}",
                     "training.save_strategy=no")
    assert result.returncode == 0, result.stderr[-3000:]
    pairs = held_out_pairs()
    before = preference_accuracy(AutoModelForCausalLM.from_pretrained(weak_sft),
                                 AutoTokenizer.from_pretrained(weak_sft), pairs)
    after = preference_accuracy(AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out), pairs)
    print(f"\nheld-out preference accuracy: SFT start {before:.3f} -> after DPO {after:.3f}")
    assert after >= before + 0.20

    files = {p.name for p in out.iterdir()}
    assert {"README.md", "training_curves.png", "metrics.jsonl", "smolalign_run.json"} <= files
    logged = set().union(*map(set, map(json.loads, (out / "metrics.jsonl").open())))
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= logged
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(weak_sft).chat_template, "template reused as is"
    assert tokenizer.eos_token == "<|im_end|>"


def make_hub_layout_ultrafeedback(root, rows_train=48, rows_test=16):
    """A local copy laid out like HuggingFaceH4/ultrafeedback_binarized on the hub."""
    import datasets

    (root / "data").mkdir(parents=True)
    datasets.Dataset.from_list(preference_rows("train")[:rows_train]).to_parquet(
        str(root / "data" / "train_prefs-00000-of-00001.parquet"))
    datasets.Dataset.from_list(preference_rows("test")[:rows_test]).to_parquet(
        str(root / "data" / "test_prefs-00000-of-00001.parquet"))
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train_prefs\n    path: data/train_prefs-*\n"
        "  - split: test_prefs\n    path: data/test_prefs-*\n---\n# UltraFeedback binarized (local copy)\n")
    return root


def test_hub_layout_ultrafeedback_loads_and_trains(tmp_path, weak_sft):
    repo = make_hub_layout_ultrafeedback(tmp_path / "ultrafeedback_binarized")
    out = tmp_path / "dpo"
    # the shipped paper recipe (train_prefs / test_prefs), shrunk to run on CPU
    result = run_cli("dpo", "dpo", "--model", weak_sft, f"data.dataset={repo}", f"training.output_dir={out}",
                     "training.bf16=false", "training.activation_checkpointing=false", "training.max_steps=3",
                     "training.per_device_train_batch_size=4", "batch.global_rows=4",
                     "training.eval_steps=3", "training.save_strategy=no", "training.report_to=[]")
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((out / "smolalign_run.json").read_text())
    assert info["data"]["train_rows"] == 48 and info["data"]["eval_rows"] == 16
    records = list(map(json.loads, (out / "metrics.jsonl").open()))
    assert any("eval_rewards/accuracies" in r for r in records)


def test_precomputed_reference_keeps_no_reference_model(tmp_path, weak_sft):
    from trl import DPOConfig
    from transformers import AutoModelForCausalLM

    from smolalign.train.dpo import reference_model

    model = AutoModelForCausalLM.from_pretrained(weak_sft)
    assert reference_model(model, DPOConfig(output_dir=str(tmp_path), bf16=False,
                                            precompute_ref_log_probs=True), None) is None
    out = tmp_path / "dpo"
    result = run_cli("dpo", "debug/dpo", "--model", weak_sft, f"training.output_dir={out}", "training.max_steps=4",
                     "training.precompute_ref_log_probs=true", "training.save_strategy=no", "training.report_to=[]",
                     "data.num_samples=64")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "smolalign_run.json").read_text())["reference"] == "precomputed"


def test_lora_dpo_uses_adapter_free_base_as_reference(tmp_path, weak_sft):
    out = tmp_path / "dpo-lora"
    result = run_cli("dpo", "debug/dpo", "--model", weak_sft, f"training.output_dir={out}", "training.max_steps=4",
                     "training.save_strategy=no", "training.report_to=[]", "data.num_samples=64",
                     "lora={r: 4, lora_alpha: 8, target_modules: [q_proj, v_proj]}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "adapter_config.json").is_file()


# ---------------------------------------------------------------- the reference model


@pytest.fixture(scope="module")
def few_pairs():
    from smolalign.config import DataSection
    from smolalign.data import load_data

    return load_data(DataSection(dataset=str(DEBUG_DIR / "data/tasks-dpo"), num_samples=16), task="preference").train


def dpo_config(out, **overrides):
    from trl import DPOConfig

    settings = dict(output_dir=str(out), bf16=False, activation_checkpointing=False, max_length=256, beta=0.5,
                    per_device_train_batch_size=8, learning_rate=3e-3, max_steps=2, logging_steps=1,
                    save_strategy="no", report_to=[], seed=42, disable_tqdm=True)
    return DPOConfig(**{**settings, **overrides})


def test_reference_loaded_from_the_path_gives_the_deep_copy_losses(tmp_path, weak_sft, few_pairs):
    """DPOTrainer now loads the reference from the model's path (the way that works under ZeRO-3 and FSDP); on one
    CPU process it must be exactly the reference the former deep copy gave: same log-probs, same losses."""
    import copy

    import torch
    from transformers import set_seed
    from trl import DPOTrainer

    from smolalign.model.load import load_model
    from smolalign.train.dpo import dpo_trainer, reference_source

    ref_logps, losses = {}, {}
    for way in ("deep copy", "from path"):
        model, tokenizer, _ = load_model(str(weak_sft))
        args = dpo_config(tmp_path / way.replace(" ", "-"))
        if way == "from path":
            assert reference_source(model, args, None) == f"loaded from {weak_sft}"
            trainer = dpo_trainer(model, tokenizer, args, few_pairs, None, None)
        else:  # what smolalign did before: a frozen copy of the policy, handed over explicitly
            frozen = copy.deepcopy(model).eval().requires_grad_(False)
            trainer = DPOTrainer(model=model, ref_model=frozen, args=args, train_dataset=few_pairs,
                                 processing_class=tokenizer)
        assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
        set_seed(42)
        batch = next(iter(trainer.get_train_dataloader()))
        ref_logps[way] = torch.cat(trainer.compute_ref_log_probs(trainer.ref_model, batch))
        set_seed(42)
        trainer.train()
        losses[way] = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    torch.testing.assert_close(ref_logps["from path"], ref_logps["deep copy"], atol=1e-6, rtol=1e-6)
    assert len(losses["deep copy"]) == 2 and losses["from path"] == pytest.approx(losses["deep copy"], rel=1e-6)


@pytest.mark.parametrize("saved, lora, precompute, kind, expected", [
    ("runs/sft", False, False, "DEEPSPEED", "loaded from runs/sft"),
    ("runs/sft", False, False, "FSDP", "loaded from runs/sft"),
    ("runs/sft", False, True, "FSDP", "loaded from runs/sft"),  # TRL loads one for the precompute under FSDP
    (None, False, False, "NO", "deep copy"),
    (None, False, False, "MULTI_GPU", "deep copy"),  # DDP: every rank holds the whole model
    (None, True, False, "DEEPSPEED", "adapter-disabled base"),
    (None, False, True, "DEEPSPEED", "precomputed"),
    (None, False, False, "DEEPSPEED", "model init"),
    (None, False, True, "FSDP", "model init"),
])
def test_reference_plan_never_deep_copies_a_sharded_model(saved, lora, precompute, kind, expected):
    from smolalign.errors import UsageError
    from smolalign.train.dpo import reference_plan

    if expected == "model init":
        with pytest.raises(UsageError, match="smolalign model init"):
            reference_plan(saved, lora, precompute, kind)
    else:
        assert reference_plan(saved, lora, precompute, kind) == expected


def test_only_a_model_that_exists_in_memory_is_deep_copied(tmp_path, weak_sft):
    from transformers import AutoTokenizer

    from smolalign.model.build import build_model
    from smolalign.model.load import load_model
    from smolalign.train.dpo import reference_model, saved_path

    args = dpo_config(tmp_path)
    loaded, _, _ = load_model(str(weak_sft))
    assert saved_path(loaded) == str(weak_sft) and reference_model(loaded, args, None) is None
    fresh = build_model("tiny", AutoTokenizer.from_pretrained(DEBUG_DIR / "tokenizer"))
    assert saved_path(fresh) is None
    frozen = reference_model(fresh, args, None)
    assert frozen is not fresh and not any(p.requires_grad for p in frozen.parameters())


# ---------------------------------------------------------------- merging a saved adapter


def test_merge_from_disk_equals_the_in_memory_merge(tmp_path, weak_sft, few_pairs):
    import copy

    import torch
    from peft import LoraConfig
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from smolalign.errors import UsageError
    from smolalign.model.load import load_model
    from smolalign.train.dpo import dpo_trainer
    from smolalign.train.merge import merge_saved_adapter

    model, tokenizer, _ = load_model(str(weak_sft))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], task_type="CAUSAL_LM")
    trainer = dpo_trainer(model, tokenizer, dpo_config(tmp_path / "t", max_steps=3, learning_rate=1e-2),
                          few_pairs, None, lora)
    trainer.train()
    run = tmp_path / "run"
    trainer.save_model(str(run))  # as a run's finish() saves it: adapter, then tokenizer
    tokenizer.save_pretrained(str(run))
    in_memory = copy.deepcopy(trainer.model).merge_and_unload().eval()

    merged_dir = merge_saved_adapter(run, run / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    ids = torch.tensor([tokenizer.encode("Sort the words: dog cat fish bird")])
    with torch.no_grad():
        # the class's forward: TRL's fused-head patch on the instance still calls the original (unmerged) model
        expected = type(in_memory).forward(in_memory, input_ids=ids).logits
        before = AutoModelForCausalLM.from_pretrained(weak_sft)(ids).logits
        got = merged(ids).logits
    assert not torch.allclose(expected, before, atol=1e-4), "the adapter learned something"
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    assert AutoTokenizer.from_pretrained(merged_dir).chat_template == tokenizer.chat_template
    stop = GenerationConfig.from_pretrained(merged_dir).eos_token_id
    assert stop == in_memory.generation_config.eos_token_id == tokenizer.eos_token_id  # <|im_end|> after SFT
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")], "no staging directory left behind"
    assert AutoConfig.from_pretrained(merge_saved_adapter(run, tmp_path / "bf16", "bfloat16")).dtype == torch.bfloat16

    # an adapter trained on a preset names no model that can be loaded again: refused, nothing written
    orphan = tmp_path / "orphan"
    shutil.copytree(run, orphan, ignore=shutil.ignore_patterns("merged"))
    config = json.loads((orphan / "adapter_config.json").read_text())
    (orphan / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "preset:tiny"}))
    with pytest.raises(UsageError, match="smolalign model init"):
        merge_saved_adapter(orphan, orphan / "merged")
    assert not (orphan / "merged").exists()


def test_merge_of_a_preset_base_is_refused_before_training(weak_sft):
    from smolalign.errors import UsageError
    from smolalign.train.merge import check_mergeable

    for name_or_path, preset in ((None, "tiny"), ("tiny", None)):
        with pytest.raises(UsageError, match="smolalign model init tiny"):
            check_mergeable(name_or_path, preset)
    check_mergeable(str(weak_sft), None)


def test_shipped_sharded_configs_write_a_whole_final_model():
    """transformers' final `save_model` writes no weights at all under FSDP's SHARDED_STATE_DICT, and no single
    weights file under ZeRO-3 unless 16-bit gathering is on: the merge and every later command need one."""
    import yaml

    fsdp = yaml.safe_load((DEBUG_DIR.parent / "accelerate" / "fsdp.yaml").read_text())
    zero3 = yaml.safe_load((DEBUG_DIR.parent / "accelerate" / "zero3.yaml").read_text())
    assert fsdp["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert zero3["deepspeed_config"]["zero3_save_16bit_model"] is True


# ---------------------------------------------------------------- several processes, kill and resume


@pytest.mark.slow  # whole commands in subprocesses
def test_two_process_dpo_writes_one_model_and_one_run_record(tmp_path, weak_sft):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "ddp"
    result = run_cli("dpo", "debug/dpo", "--model", weak_sft, "--accelerate-config", "cpu-ddp",
                     "--num-processes", "2", f"training.output_dir={out}", "training.max_steps=3",
                     "training.per_device_train_batch_size=4", "training.logging_steps=1", "training.save_strategy=no",
                     "training.report_to=[]", "data.num_samples=32", "data.eval_split=null",
                     "training.eval_strategy=no")
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((out / "smolalign_run.json").read_text())
    assert info["processes"] == 2 and info["reference"] == f"loaded from {weak_sft}"
    logged = [r["step"] for r in map(json.loads, (out / "metrics.jsonl").open()) if "loss" in r]
    assert logged == [1, 2, 3], "each step logged once, by one process"
    assert result.stderr.count("model written to") == 1
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "no half-written file left"
    AutoModelForCausalLM.from_pretrained(out)


def step_losses(out):
    return {r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").open()) if "loss" in r}


@pytest.mark.slow  # whole commands in subprocesses
def test_sigkill_and_resume_gives_the_same_losses(tmp_path, weak_sft):
    from smolalign.train.checkpoints import COMPLETE_MARKER, checkpoints

    args = ["dpo", "debug/dpo", "--model", str(weak_sft), "training.max_steps=12", "training.save_steps=4",
            "training.logging_steps=1", "training.per_device_train_batch_size=4", "training.report_to=[]",
            "training.save_total_limit=null", "data.num_samples=64", "data.eval_split=null",
            "training.eval_strategy=no"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    result = run_cli(*args, f"training.output_dir={reference}")
    assert result.returncode == 0, result.stderr[-3000:]

    process = subprocess.Popen([sys.executable, "-m", "smolalign.cli", *args, f"training.output_dir={killed}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 1200
    while time.time() < deadline and process.poll() is None:
        if any((path / COMPLETE_MARKER).is_file() for _, path in checkpoints(killed)):
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = [step for step, path in checkpoints(killed) if (path / COMPLETE_MARKER).is_file()]
    assert done and max(done) < 12, "killed mid-run, after at least one complete checkpoint"

    # a checkpoint killed half-written: newer than every complete one, no marker, a truncated weights file
    partial = killed / f"checkpoint-{max(done) + 100}"
    shutil.copytree(killed / f"checkpoint-{max(done)}", partial)
    (partial / COMPLETE_MARKER).unlink()
    (partial / "model.safetensors").write_bytes((partial / "model.safetensors").read_bytes()[:100])

    result = run_cli(*args, f"training.output_dir={killed}", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not partial.exists(), "the half-written checkpoint is skipped and removed"
    expected, resumed = step_losses(reference), step_losses(killed)
    after = [s for s in expected if s > max(done)]
    assert after and all(resumed[s] == pytest.approx(expected[s], rel=1e-5) for s in after), (expected, resumed)


# ---------------------------------------------------------------- bad input


GOOD = {"prompt": "Q", "chosen": "good", "rejected": "bad"}
DIFFERENT_PROMPTS = {"chosen": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "a"}],
                     "rejected": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "b"}]}


@pytest.mark.parametrize("case", ["different-prompts", "missing-rejected", "empty-split", "sft-data", "no-model"])
def test_bad_input_one_line_exit_2(tmp_path, weak_sft, case):
    out = tmp_path / "out"
    data = tmp_path / "p.jsonl"
    args = {
        "different-prompts": [f"data.dataset={write_jsonl(data, [GOOD, DIFFERENT_PROMPTS])}"],
        "missing-rejected": [f"data.dataset={write_jsonl(data, [{'prompt': 'Q', 'chosen': 'a'}])}"],
        "empty-split": [f"data.dataset={write_jsonl(data, [])}"],
        "sft-data": [f"data.dataset={DEBUG_DIR / 'data/tasks-sft/train.jsonl'}"],
        "no-model": [],
    }[case]
    model = tmp_path / "missing-model" if case == "no-model" else weak_sft
    result = run_cli("dpo", "debug/dpo", "--model", model, f"training.output_dir={out}", "data.eval_split=null", *args)
    assert_user_error(result)
    assert not out.exists()
