"""`smolalign dpo` with the real DPOTrainer: learning on held-out pairs, hub-layout data, references, bad input."""

import json

import pytest

from smolalign.data.formats import to_preference
from smolalign.tasks import preference_rows

from .conftest import DEBUG_DIR, assert_user_error, run_cli, write_jsonl


def held_out_pairs():
    return [to_preference(json.loads(line)) for line in (DEBUG_DIR / "data/tasks-dpo/test.jsonl").open()]


@pytest.fixture(scope="module")
def weak_sft(tmp_path_factory):
    """A short SFT run: a starting point that still prefers some wrong answers, as real SFT models do."""
    out = tmp_path_factory.mktemp("runs") / "weak-sft"
    result = run_cli("sft", "debug/sft", f"training.output_dir={out}", "training.max_steps=60",
                     "training.save_strategy=no", "training.report_to=[]")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_debug_recipe_raises_preference_accuracy(tmp_path, weak_sft):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smolalign.evaluate import preference_accuracy

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
                     "training.per_device_train_batch_size=4", "training.gradient_accumulation_steps=1",
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
    frozen = reference_model(model, DPOConfig(output_dir=str(tmp_path), bf16=False), None)
    assert frozen is not model and not any(p.requires_grad for p in frozen.parameters())
    assert reference_model(model, DPOConfig(output_dir=str(tmp_path), bf16=False,
                                            precompute_ref_log_probs=True), None) is None
    out = tmp_path / "dpo"
    result = run_cli("dpo", "debug/dpo", "--model", weak_sft, f"training.output_dir={out}", "training.max_steps=4",
                     "training.precompute_ref_log_probs=true", "training.save_strategy=no", "training.report_to=[]",
                     "data.num_samples=64")
    assert result.returncode == 0, result.stderr[-3000:]


def test_lora_dpo_uses_adapter_free_base_as_reference(tmp_path, weak_sft):
    out = tmp_path / "dpo-lora"
    result = run_cli("dpo", "debug/dpo", "--model", weak_sft, f"training.output_dir={out}", "training.max_steps=4",
                     "training.save_strategy=no", "training.report_to=[]", "data.num_samples=64",
                     "lora={r: 4, lora_alpha: 8, target_modules: [q_proj, v_proj]}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "adapter_config.json").is_file()


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
