"""The speed settings: chosen by one plain function of the machine's facts (so the GPU case is tested here, on CPU),
on for a GPU, off on CPU, each turned off by a recipe key, and shown by --print-config."""

from __future__ import annotations

import pytest

from smolalign.train.resolve import resolve_recipe
from smolalign.train.speed import (Machine, choose_speed, explain, fit_micro_batch, speed_defaults,
                                   strategy_from_environment)

from .conftest import DEBUG_DIR, run_cli

GiB = 1024**3
H100 = Machine(gpu=True, bf16=True, name="H100", memory=80 * GiB, liger=True, flash_attn=True)
H100_NO_LIGER = Machine(gpu=True, bf16=True, name="H100", memory=80 * GiB, liger=False, flash_attn=True)
CPU = Machine(gpu=False)
OFF = ["training.use_liger_kernel=false", "training.optim=adamw_torch", "training.torch_compile=false",
       "model.attn_implementation=sdpa", "speed.fit_micro_batch=false", "model.dtype=bfloat16"]


def command(kind: str):
    from smolalign.cli import _training_command

    return _training_command(kind)


def chosen(machine: Machine, kind: str) -> dict:
    return {setting.key: setting.value for setting in choose_speed(machine, command(kind))}


@pytest.mark.parametrize("kind", ["sft", "dpo", "pretrain"])
def test_a_gpu_gets_every_speed_setting_and_a_cpu_none(kind):
    gpu = chosen(H100, kind)
    assert gpu["training.use_liger_kernel"] is True
    assert gpu["training.optim"] == "adamw_torch_fused"
    assert gpu["model.attn_implementation"] == "flash_attention_2"
    assert gpu["speed.fit_micro_batch"] is True
    assert gpu["training.torch_compile"] is False  # Liger is installed: compile is never on beside it
    assert gpu["speed.cudnn_attention"] is False  # its bf16 backward's NaN gradients (train/speed.py)
    assert chosen(H100_NO_LIGER, kind)["training.torch_compile"] is (kind == "pretrain")  # one shape a batch
    cpu = chosen(CPU, kind)
    assert cpu == {"model.dtype": None, "training.use_liger_kernel": False, "training.optim": None,
                   "training.torch_compile": False, "model.attn_implementation": None,
                   "speed.fit_micro_batch": False, "speed.cudnn_attention": None}
    assert speed_defaults(choose_speed(CPU, command(kind))) == {
        "training": {"use_liger_kernel": False, "torch_compile": False}, "speed": {"fit_micro_batch": False}}


@pytest.mark.parametrize("liger", [True, False])
@pytest.mark.parametrize("kind", ["sft", "dpo", "pretrain"])
def test_liger_and_torch_compile_are_never_chosen_together(kind, liger):
    """Together they crashed on an H200 (issue 21); Liger alone was as fast or faster: Liger where installed,
    compile (pretraining only) where not."""
    machine = Machine(gpu=True, bf16=True, name="H200", memory=141 * GiB, liger=liger)
    settings = chosen(machine, kind)
    assert not (settings["training.use_liger_kernel"] and settings["training.torch_compile"])
    assert settings["training.use_liger_kernel"] is liger
    assert settings["training.torch_compile"] is (kind == "pretrain" and not liger)


@pytest.mark.parametrize("recipe", ["pretrain", "pretrain-135m", "pretrain-360m", "debug/pretrain"])
@pytest.mark.parametrize("machine", [H100, H100_NO_LIGER], ids=["liger", "no-liger"])
def test_a_shipped_pretraining_recipe_gets_liger_or_compile_on_a_gpu(recipe, machine):
    """On an H200 the smoke run of pretrain-135m, whose recipe wrote use_liger_kernel: false, ran with neither
    Liger (installed) nor compile: a shipped recipe leaves the choice to the machine."""
    training = resolved(machine, recipe, []).recipe.training
    assert training["use_liger_kernel"] is machine.liger and training["torch_compile"] is not machine.liger


def test_a_recipe_that_writes_liger_or_compile_gets_the_other_off_and_both_on_is_refused():
    from smolalign.errors import UsageError

    liger_off = resolved(H100, "debug/pretrain", ["training.use_liger_kernel=false"])
    assert liger_off.recipe.training["torch_compile"] is True
    assert any("torch_compile=true" in note for note in liger_off.notes)
    compiled = resolved(H100, "debug/pretrain", ["training.torch_compile=true"])
    assert compiled.recipe.training["use_liger_kernel"] is False
    assert any("use_liger_kernel=false" in note for note in compiled.notes)
    eager = resolved(H100, "debug/pretrain", ["training.use_liger_kernel=false", "training.torch_compile=false"])
    assert not eager.recipe.training["torch_compile"] and not eager.recipe.training["use_liger_kernel"]
    sft = resolved(H100, "debug/sft", ["training.use_liger_kernel=false"])
    assert not sft.recipe.training["torch_compile"]  # packed rows change shape: no compile for SFT
    with pytest.raises(UsageError, match="both on"):
        resolved(H100, "debug/pretrain", ["training.use_liger_kernel=true", "training.torch_compile=true"])


@pytest.mark.parametrize("kind,weights", [("pretrain", "float32"), ("sft", "bfloat16"), ("dpo", "bfloat16")])
def test_pretraining_keeps_fp32_master_weights_on_a_gpu_and_alignment_bf16(kind, weights):
    from smolalign.train.speed import choose_weights

    assert choose_weights(H100, command(kind)).value == weights
    assert choose_weights(CPU, command(kind)).value is None  # `auto`: fp32 on CPU, no autocast
    no_bf16 = Machine(gpu=True, bf16=False, name="V100", memory=32 * GiB)
    assert choose_weights(no_bf16, command(kind)).value == "float32"


def test_plan_memory_follows_the_weights_choice():
    """fp32 master weights cost 4 bytes a parameter where pure bf16 costs 2: plan's estimate follows the choice."""
    from smolalign.model.memory import estimate
    from smolalign.plan.model import model_facts

    master = resolved(H100, "debug/pretrain", []).recipe
    pure = resolved(H100, "debug/pretrain", ["model.dtype=bfloat16"]).recipe
    assert master.model.dtype == "float32" and pure.model.dtype == "bfloat16"
    arch = model_facts(master.model).arch
    shape = command("pretrain").memory_shape
    fp32, bf16 = (estimate(arch, shape(r, 8, "single", gpu=True, flash_installed=False), "single", 1)
                  for r in (master, pure))
    assert fp32.weights == 2 * bf16.weights and fp32.total > bf16.total


def test_what_is_not_installed_is_not_chosen():
    bare = chosen(Machine(gpu=True, bf16=True, name="H100", memory=80 * GiB), "pretrain")
    assert bare["training.use_liger_kernel"] is False
    assert bare["model.attn_implementation"] is None  # `auto`: sdpa without flash-attn
    why = {s.key: s.why for s in choose_speed(Machine(gpu=True), command("sft"))}
    assert "pip install 'smolalign[gpu]'" in why["training.use_liger_kernel"]


def resolved(machine: Machine, recipe: str, overrides: list[str]):
    return resolve_recipe(recipe, command("pretrain" if "pretrain" in recipe else "sft"), overrides, machine)


def values(result) -> dict:
    from smolalign.train.speed import recipe_value

    return {s.key: recipe_value(result.recipe, s.key) for s in result.speed}


@pytest.mark.parametrize("machine", [H100, H100_NO_LIGER], ids=["liger", "no-liger"])
def test_a_recipe_turns_each_setting_off(machine):
    on = resolved(machine, "debug/pretrain", [])
    assert values(on) == {"model.dtype": "float32", "training.use_liger_kernel": machine.liger,
                          "training.optim": "adamw_torch_fused", "training.torch_compile": not machine.liger,
                          "model.attn_implementation": "flash_attention_2", "speed.fit_micro_batch": True,
                          "speed.cudnn_attention": False}
    off = resolved(machine, "debug/pretrain", OFF)
    assert values(off) == {"model.dtype": "bfloat16", "training.use_liger_kernel": False,
                           "training.optim": "adamw_torch", "training.torch_compile": False,
                           "model.attn_implementation": "sdpa", "speed.fit_micro_batch": False,
                           "speed.cudnn_attention": False}
    lines = explain(off.speed, off.recipe, machine)[1:]
    assert len(lines) == 7 and all(" off  " in line for line in lines), lines
    chosen_on = {s.name for s in on.speed if s.is_on(s.value)}
    assert all("set by the recipe" in line for line in lines if line.split("  ")[1].strip() in chosen_on)
    on_lines = explain(on.speed, on.recipe, machine)[1:]
    assert sum(" on   " in line for line in on_lines) == 5, on_lines  # all but one of Liger and compile


def test_on_cpu_the_recipe_runs_as_written():
    result = resolved(CPU, "debug/sft", [])
    training = result.recipe.training
    assert (training["per_device_train_batch_size"], training["gradient_accumulation_steps"]) == (8, 1)
    assert not training["bf16"] and not training["activation_checkpointing"] and not training["use_liger_kernel"]
    assert result.recipe.model.attn_implementation == "auto" and not result.notes


def test_the_micro_batch_that_fits_keeps_the_effective_batch():
    assert fit_micro_batch(4, 32, lambda m: m <= 16) == (16, 8)
    assert fit_micro_batch(4, 32, lambda m: True) == (128, 1)
    assert fit_micro_batch(6, 1, lambda m: m <= 4) == (3, 2)  # divisors only: the product stays 6
    assert fit_micro_batch(4, 2, lambda m: False) == (1, 8)


def test_a_small_gpu_gets_a_smaller_micro_batch_and_the_recipe_can_refuse_it():
    from smolalign.model.memory import HEADROOM, estimate
    from smolalign.plan.model import model_facts

    base = resolved(CPU, "debug/pretrain", ["data.block_size=2048", "stages=[{name: s, tokens: 1.0e6, "
                                            "mixture: {prose: 0.5, arith: 0.5}}]"]).recipe
    arch = model_facts(base.model).arch
    shape = command("pretrain").memory_shape
    need = {m: estimate(arch, shape(base, m, "single", gpu=True, flash_installed=False), "single", 1).total
            for m in (2, 4, 8)}
    small = Machine(gpu=True, bf16=True, name="small", memory=int((need[4] + need[8]) / 2 / HEADROOM))
    overrides = ["data.block_size=2048", "stages=[{name: s, tokens: 1.0e6, mixture: {prose: 0.5, arith: 0.5}}]"]
    fitted = resolved(small, "debug/pretrain", overrides)
    assert (fitted.recipe.training["per_device_train_batch_size"],
            fitted.recipe.training["gradient_accumulation_steps"]) == (4, 2)
    assert any("micro-batch 4 x accumulation 2 instead of the recipe's 8 x 1" in n for n in fitted.notes)
    kept = resolved(small, "debug/pretrain", overrides + ["speed.fit_micro_batch=false"])
    assert kept.recipe.training["per_device_train_batch_size"] == 8 and not kept.notes


def test_print_config_shows_each_setting_and_why(tmp_path):
    result = run_cli("pretrain", "debug/pretrain", "--print-config", "training.optim=adamw_torch", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    comments = [line for line in result.stdout.splitlines() if line.startswith("#   ")]
    assert [line.split()[1] for line in comments] == ["fp32", "Liger", "fused", "torch.compile", "flash-attn",
                                                      "micro-batch", "cuDNN"]
    assert "training.optim=adamw_torch: set by the recipe" in result.stdout
    assert "speed:\n  fit_micro_batch: false" in result.stdout  # the section, as the run record keeps it
    assert not any(tmp_path.iterdir())


def test_the_strategy_accelerate_announces():
    assert strategy_from_environment({}) == "single"
    assert strategy_from_environment({"WORLD_SIZE": "8"}) == "DDP"
    assert strategy_from_environment({"WORLD_SIZE": "8", "ACCELERATE_USE_FSDP": "true"}) == "FSDP"
    zero = {"WORLD_SIZE": "8", "ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}
    assert strategy_from_environment(zero) == "ZeRO-3"


def test_cpu_turns_checkpointing_on_only_where_the_activations_would_not_fit():
    """Off on CPU (it costs ~3x there), unless the plan's estimate says the run would not fit the memory; a recipe
    or command line that writes the key keeps its value."""
    from smolalign.train.speed import CPU_CHECKPOINTING_NOTE

    def resolved(memory: int, *overrides: str):
        return resolve_recipe("debug/sft", command("sft"), list(overrides), Machine(gpu=False, memory=memory))

    roomy = resolved(64 * GiB)
    assert roomy.recipe.training["activation_checkpointing"] is False and not roomy.notes
    # the tiny preset at 8 x 128 tokens needs a few MB: a machine with 4 MB free cannot hold its activations
    tight = resolved(4 * 1024**2)
    assert tight.recipe.training["activation_checkpointing"] is True and tight.notes == [CPU_CHECKPOINTING_NOTE]
    kept = resolved(4 * 1024**2, "training.activation_checkpointing=false")
    assert kept.recipe.training["activation_checkpointing"] is False and not kept.notes


@pytest.mark.parametrize("kind", ["sft", "dpo", "pretrain"])
def test_cudnn_attention_is_off_on_a_gpu_with_its_reason_and_true_turns_it_on(kind):
    recipe = {"sft": "sft", "dpo": "dpo", "pretrain": "pretrain-135m"}[kind]
    tokenizer = [f"model.tokenizer={DEBUG_DIR / 'tokenizer'}"]
    model = [] if kind == "pretrain" else ["model.preset=smollm2-135m", *tokenizer]
    default = resolve_recipe(recipe, command(kind), model, H100)
    assert default.recipe.sections["speed"].cudnn_attention is False
    line = next(line for line in explain(default.speed, default.recipe, H100) if "cuDNN" in line)
    assert "off  speed.cudnn_attention=false" in line and "NaN gradients" in line, line
    on = resolve_recipe(recipe, command(kind), [*model, "speed.cudnn_attention=true"], H100)
    assert on.recipe.sections["speed"].cudnn_attention is True
    line = next(line for line in explain(on.speed, on.recipe, H100) if "cuDNN" in line)
    assert "on   speed.cudnn_attention=true: set by the recipe" in line, line


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sft", "dpo", "pretrain"])
def test_the_cudnn_setting_reaches_torchs_flag_in_each_command(kind, tmp_path):
    """The switch is process-wide: each command sets it before its model runs (one training step here), to what
    the recipe resolved."""
    import torch

    from .conftest import run_in_process

    tokenizer = DEBUG_DIR / "tokenizer"
    recipe = {"sft": ["debug/sft", "data.num_samples=16", "data.eval_split=null"],
              "dpo": ["debug/dpo", "model.preset=tiny", f"model.tokenizer={tokenizer}", "data.num_samples=16",
                      "data.eval_split=null"],
              "pretrain": ["debug/pretrain"]}[kind]
    short = ["training.max_steps=1", "training.save_strategy=no", "training.eval_strategy=no",
             "training.report_to=[]", f"training.output_dir={tmp_path / 'run'}"]
    before = torch.backends.cuda.cudnn_sdp_enabled()
    wanted = kind != "dpo"  # one run a command, both ways across the three (a GPU's default is off)
    try:
        torch.backends.cuda.enable_cudnn_sdp(not wanted)
        result = run_in_process(kind, *recipe, *short, f"speed.cudnn_attention={str(wanted).lower()}")
        assert result.returncode == 0, result.stderr[-2000:]
        assert torch.backends.cuda.cudnn_sdp_enabled() is wanted
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)
