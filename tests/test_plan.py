"""`smolalign plan`: memory figures against the bytes of a real model, its optimizer and the tensors it saves for
backward (on CPU; bench/gpu.sh checks them against torch.cuda.max_memory_allocated on a GPU), the paper's step
counts, steps against a real Trainer, and bad recipes failing exactly as the training commands fail."""

from __future__ import annotations

import json

import pytest

from smolalign.errors import UsageError
import torch

from smolalign.model.memory import Shape, activations, model_states
from smolalign.model.memory import arch_of

from .conftest import REPO, run_cli


def real_bytes(model, optimizer) -> tuple[int, int, int]:
    params = {id(p): p for p in model.parameters()}.values()
    weights = sum(p.numel() * p.element_size() for p in params)
    gradients = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    states = sum(t.numel() * t.element_size() for state in optimizer.state.values()
                 for key, t in state.items() if key != "step")
    return weights, gradients, states


def one_step(model) -> tuple[int, int, int]:
    ids = torch.randint(0, model.config.vocab_size, (2, 32))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=True)
    optimizer.step()
    return real_bytes(model, optimizer)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weights_gradients_and_adamw_states_are_the_real_models_bytes(dtype):
    from smolalign.model.build import build_model

    model = build_model("tiny", dtype=dtype)
    weights, gradients, states = one_step(model)
    arch = arch_of(model.config)
    shape = Shape(rows=1, sequence=1, weight_bytes=torch.finfo(dtype).bits // 8)
    assert model_states(arch, shape, "single", 1) == (weights, gradients, states)
    # spread over 4 devices: each strategy keeps its share of the same bytes (model/memory.py's table)
    ddp = model_states(arch, shape, "DDP", 4)
    assert ddp == (weights, 2 * gradients, states)  # DDP's buckets: a second copy of the gradients
    w, g, o = model_states(arch, shape, "FSDP", 4)
    layer_bytes = sum(p.numel() * p.element_size() for p in model.model.layers[0].parameters())
    root_bytes = weights - arch.layers * layer_bytes
    assert w == weights / 4 + root_bytes + 2 * layer_bytes and o == states / 4
    assert g == gradients / 4 + layer_bytes
    zero3 = model_states(arch, shape, "ZeRO-3", 4)
    assert zero3[2] == 12 * arch.parameters / 4  # fp32 master, m and v, partitioned


def test_lora_trains_only_the_adapters_bytes():
    from peft import LoraConfig, get_peft_model

    from smolalign.model.build import build_model

    config = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    base = build_model("tiny")
    arch = arch_of(base.config, config)
    weights, gradients, states = one_step(get_peft_model(base, config))
    assert arch.trainable == gradients // 4 and arch.trainable < arch.parameters // 50
    assert model_states(arch, Shape(rows=1, sequence=1, weight_bytes=4), "single", 1) == (weights, gradients, states)


def saved_for_backward(model, ids) -> int:
    """Bytes of the tensors autograd keeps for backward (weights excluded), each storage once."""
    seen: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(tensor):
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(input_ids=ids, labels=ids).loss.backward()
    return sum(size for pointer, size in seen.items() if pointer not in weights)


@pytest.mark.parametrize("dtype, checkpointing, attention", [
    (torch.float32, False, "sdpa"), (torch.bfloat16, False, "sdpa"), (torch.float32, True, "sdpa"),
    (torch.float32, False, "eager"), (torch.bfloat16, False, "eager")])
def test_activations_are_the_tensors_a_real_model_saves(dtype, checkpointing, attention):
    """Eager attention keeps its L² scores in every layer: at 128 tokens they are most of what it saves."""
    from transformers import AutoModelForCausalLM

    from smolalign.model.build import llama_config

    config = llama_config("tiny", vocab_size=512)
    config._attn_implementation, config.use_cache = attention, False
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.train()
    if checkpointing:
        model.activation_checkpointing_enable()
    ids = torch.randint(0, 512, (4, 128))
    size = torch.finfo(dtype).bits // 8
    saved, _ = activations(arch_of(config), Shape(rows=4, sequence=128, weight_bytes=size, compute_bytes=size,
                                                   checkpointing=checkpointing, eager=attention == "eager"))
    assert saved_for_backward(model, ids) == pytest.approx(saved, rel=0.01)


def plan(recipe: str, overrides=(), **options) -> dict:
    from smolalign.plan.run import plan_run, recipe_kind
    from smolalign.cli import _training_command

    command = _training_command(recipe_kind(recipe))
    return plan_run(command, recipe, list(overrides), **options)


def test_the_papers_17b_pretraining_is_524m_steps():
    # the released nanotron config: one data stage, 11T tokens at 2,097,152 tokens a step (4 x 32 x 8 GPUs x 2,048)
    result = plan("pretrain", ["stages=[{name: all, tokens: 1.1e13, mixture: {fineweb-edu: 0.6, dclm: 0.4}}]"],
                  gpus=8, accelerate_config="fsdp")
    (phase,) = result["run"]["phases"]
    assert phase["tokens_per_step"] == 2_097_152
    assert result["run"]["steps"] == 5_245_209 and int(result["run"]["steps"] / 1e4) / 100 == 5.24
    assert result["flops"]["total"] == pytest.approx(1.1e13 * (6 * 1_711_376_384 + 12 * 24 * 32 * 64 * 2048),
                                                     rel=1e-6)
    assert "measured in bench/" in result["time"]["mfu_source"] and result["time"]["mfu"] == 0.199


@pytest.mark.parametrize("gpus", [1, 8, 64])
def test_the_papers_global_batch_on_any_number_of_gpus(gpus):
    """batch.global_tokens: the accumulation follows from the processes, and the run is the paper's on each."""
    result = plan("pretrain", ["stages=[{name: all, tokens: 1.1e13, mixture: {fineweb-edu: 0.6, dclm: 0.4}}]",
                               "speed.fit_micro_batch=false"], gpus=gpus)
    assert result["batch"]["accumulation"] == 2_097_152 // (gpus * 4 * 2048)
    assert result["run"]["phases"][0]["tokens_per_step"] == 2_097_152 and result["run"]["steps"] == 5_245_209
    assert any(f"batch.global_tokens 2,097,152 / ({gpus} process(es) x 4 per device" in n for n in result["notes"])


def test_a_global_batch_that_cannot_be_met_is_refused_as_the_training_command_refuses_it():
    with pytest.raises(UsageError, match=r"batch.global_tokens=2,097,152 cannot be met exactly on 3 process\(es\)"):
        plan("pretrain", ["speed.fit_micro_batch=false"], gpus=3)
    sft = plan("sft", ["speed.fit_micro_batch=false"], gpus=8, rows=1000, tokens_per_row=500)
    assert sft["batch"]["accumulation"] == 4 and sft["batch"]["rows_per_step"] == 128
    with pytest.raises(UsageError, match="batch.global_rows=128 cannot be met exactly"):
        plan("dpo", ["speed.fit_micro_batch=false"], gpus=3, rows=1000, tokens_per_row=500)


def test_dpo_with_precomputed_reference_log_probs_plans_no_reference_model():
    """TRL computes the reference's log-probs once before training and keeps no reference model (test_dpo.py); under
    FSDP it still loads one for the precompute."""
    args = ["model.preset=smollm2-360m", f"model.tokenizer={REPO / 'recipes/debug/tokenizer'}",
            "speed.fit_micro_batch=false"]
    rows = dict(gpus=8, accelerate_config="fsdp", rows=1000, tokens_per_row=500)

    def weights(*overrides, strategy="single"):
        memory = plan("dpo", [*args, *overrides], **rows)["memory"]
        return next(r["weights"] for r in memory if r["strategy"] == strategy and not r["checkpointing"])

    with_reference, precomputed = weights(), weights("training.precompute_ref_log_probs=true")
    assert with_reference == 2 * precomputed  # a bf16 reference beside the bf16 policy, the same model
    assert weights("training.precompute_ref_log_probs=true", strategy="FSDP") == weights(strategy="FSDP")


def test_eager_attention_fits_a_far_smaller_micro_batch():
    """Its L² scores: at 2,048 tokens, 216 MiB a row a layer for SmolLM2-135M in bf16 (model/memory.py)."""
    args = ["stages=[{name: s, tokens: 1.0e9, mixture: {fineweb-edu: 1.0}}]", "training.use_liger_kernel=false",
            "training.torch_compile=false"]
    sdpa = plan("pretrain-135m", args, gpu_name="H100")["batch"]["micro_batch"]
    eager = plan("pretrain-135m", [*args, "model.attn_implementation=eager"], gpu_name="H100")["batch"]["micro_batch"]
    assert eager < sdpa / 2, (eager, sdpa)


def test_plan_of_the_shipped_pretraining_recipe_through_the_cli():
    result = run_cli("plan", "pretrain", "--accelerate-config", "fsdp", "--gpu", "h100", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    steps = {p["name"]: p["steps"] for p in out["run"]["phases"]}
    # stages 1-4 at 2,097,152 tokens a step; the 8k stage keeps the blocks a step, so 8,388,608 tokens each
    assert steps == {"stage-1": 2_861_023, "stage-2": 953_674, "stage-3": 953_674, "stage-4": 441_074,
                     "long-context": 8_941}
    assert out["run"]["tokens"] == pytest.approx(11e12, rel=1e-4)
    this_run = [row for row in out["memory"] if row["this_run"]]
    assert [(r["strategy"], r["devices"], r["checkpointing"]) for r in this_run] == [("FSDP", 8, False)]
    assert out["machine"]["gpu"] == "H100" and out["model"]["parameters"] == 1_711_376_384


def test_sft_steps_are_the_trainers(tmp_path):
    from smolalign.train.sft import run_sft

    overrides = ["data.num_samples=64", "data.eval_split=null", "training.packing=false",
                 "training.num_train_epochs=1", "training.gradient_accumulation_steps=3", "training.eval_strategy=no",
                 "training.save_strategy=no", "training.report_to=[]", f"training.output_dir={tmp_path / 'run'}"]
    planned = plan("debug/sft", overrides + ["speed.fit_micro_batch=false"])
    assert planned["run"]["rows"] == 64 and planned["run"]["steps"] == 3  # 8 batches of 8, a step every 3
    run_sft("debug/sft", overrides)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(record["step"] for record in logged) == planned["run"]["steps"]  # the last log: the train summary


@pytest.mark.parametrize("command, overrides", [
    ("sft", ["debug/sft", "training.learnig_rate=1"]),
    ("sft", ["debug/sft", "training.gradient_accumulation_steps=0"]),
    ("pretrain", ["debug/pretrain", "stages=[{name: s, tokens: 10, mixture: {prose: 1.0}}]"]),
    ("dpo", ["debug/dpo", "data.dataset=missing.jsonl", "model.name_or_path=" + str(REPO / "no-such-model")]),
])
def test_bad_recipes_fail_as_the_training_commands_do(tmp_path, command, overrides):
    trained = run_cli(command, *overrides, cwd=tmp_path)
    planned = run_cli("plan", *overrides, cwd=tmp_path)
    assert trained.returncode == planned.returncode == 2, (trained.stderr[-1500:], planned.stderr[-1500:])
    assert planned.stderr.strip().splitlines()[-1] == trained.stderr.strip().splitlines()[-1]
    assert not any(tmp_path.iterdir())


def test_bench_plan_memory_runs_in_tiny_mode():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(REPO / "bench" / "plan_memory.py"), "--tiny"], capture_output=True,
                          text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ratios = [float(line.rsplit(" ", 1)[-1].rstrip("x")) for line in done.stdout.splitlines()
              if line.startswith("ratio ")]
    assert ratios and all(0.9 < r < 1.1 for r in ratios), done.stdout
