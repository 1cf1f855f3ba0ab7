"""The speed settings a training run gets, chosen by one plain function from the machine's facts and the command.

Each is a documented setting of the libraries we use. On a GPU each is on where it helps; on CPU none is, since
there they only cost (as TRL's bf16 and gradient checkpointing defaults do, which `machine_defaults` turns off):
- Liger kernels, `training.use_liger_kernel` (the `liger-kernel` package, extra `smolalign[gpu]`): fused RMSNorm,
  SwiGLU and RoPE, and in pretraining (transformers' Trainer) the fused linear cross-entropy, which never
  materialises the 49,152-wide logits. TRL 1.16's SFT and DPO trainers score tokens through their own tiled LM head
  and apply only Liger's layer kernels (and warn that the switch will move to the hub's kernels in TRL 2).
- Fused AdamW, `training.optim: adamw_torch_fused`: one kernel launch for the whole update, not one per tensor.
- torch.compile, `training.torch_compile`: pretraining only, where every batch has the same shape so one graph
  serves the run, and only where Liger is not installed: Liger's Triton kernels inside a compiled graph crashed on
  an H200 (torch 2.11, triton 3.6, liger-kernel 0.8.5: a Triton CompilationError, then an illegal memory access in
  the fused cross-entropy backward), and Liger alone was as fast at 360M and faster at 1.7B (58% MFU against 50%).
  SFT's packed rows and DPO's pairs change shape from batch to batch (a recompile each), and on CPU compiling
  packed rows gained 1.05x for a long start-up (README, Benchmarks).
- Weights, `model.dtype` (`choose_weights`): on a GPU, pretraining keeps fp32 master weights under bf16 autocast,
  as nanotron (the paper's engine) does, so that updates smaller than bf16's resolution are not lost over millions
  of steps; `model.dtype=bfloat16` opts into pure bf16 (faster, less memory). SFT and DPO train bf16 weights, as the
  alignment-handbook recipes do (a few thousand steps, from a trained model); `model.dtype=float32` opts out.
- flash-attn, `model.attn_implementation: flash_attention_2`, when the package is installed: varlen kernels over
  TRL's padding-free batches, no mask; sdpa otherwise.
- The micro-batch, `speed.fit_micro_batch`: the largest per-device batch that fits the GPU by `smolalign plan`'s
  memory estimate, with gradient accumulation changed so that per-device batch x accumulation, the recipe's
  effective batch, stays as written (the optimizer sees the same tokens a step).

A recipe turns any of them off by writing the key (`training.use_liger_kernel=false`, `training.optim=adamw_torch`,
`training.torch_compile=false`, `model.attn_implementation=sdpa`, `speed.fit_micro_batch=false`); `--print-config`
says which are on and why.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Machine:
    """The facts the choice depends on; `machine_facts()` reads them, tests and `smolalign plan` state them."""

    gpu: bool
    bf16: bool = False
    name: str = "cpu"
    memory: int | None = None
    """Bytes of one device (on CPU: the memory available to the run)."""
    liger: bool = False
    """liger-kernel is installed."""
    flash_attn: bool = False
    """flash-attn is installed."""
    processes: int = 1
    strategy: str = "single"
    """How the run is spread: single, DDP, ZeRO-2, ZeRO-3 or FSDP (plan/memory.py)."""


def strategy_from_environment(environ=os.environ) -> str:
    """The strategy `accelerate launch` announces to its workers."""
    world = int(environ.get("WORLD_SIZE", "1") or 1)
    if environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        stage = int(environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2") or 2)
        return "ZeRO-3" if stage == 3 else "ZeRO-2" if stage == 2 else "DDP"  # ZeRO-1: counted as DDP (more)
    if environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "FSDP"
    return "DDP" if world > 1 else "single"


def machine_facts() -> Machine:
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    liger, flash = (importlib.util.find_spec(name) is not None for name in ("liger_kernel", "flash_attn"))
    if not torch.cuda.is_available():
        return Machine(gpu=False, memory=available_memory(), liger=liger, flash_attn=flash, processes=world)
    return Machine(gpu=True, bf16=torch.cuda.is_bf16_supported(), name=torch.cuda.get_device_name(),
                   memory=torch.cuda.get_device_properties(0).total_memory, liger=liger, flash_attn=flash,
                   processes=world, strategy=strategy_from_environment())


def available_memory() -> int | None:
    """Bytes of memory free for a run on this machine (Linux's MemAvailable; None where it cannot be read)."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def base_defaults(machine: Machine) -> dict:
    """Training defaults that depend on the machine, for every command: TRL defaults to bf16 and gradient
    checkpointing even on CPU, where both only cost time (~3x); pinned memory only speeds host-to-GPU copies."""
    return {"bf16": machine.gpu and machine.bf16, "activation_checkpointing": machine.gpu,
            "dataloader_pin_memory": machine.gpu}


@dataclass(frozen=True)
class Setting:
    name: str
    key: str
    """Where the recipe sets it: `training.use_liger_kernel`, `model.attn_implementation`, `speed.fit_micro_batch`."""
    value: object
    """What this machine gets by default; None: nothing chosen, the library's own default applies."""
    why: str

    def is_on(self, value) -> bool:
        return ON.get(self.key, bool)(value)


ON = {"training.optim": lambda value: value == "adamw_torch_fused",
      "model.attn_implementation": lambda value: str(value).startswith("flash_attention"),
      "model.dtype": lambda value: value == "float32"}
# What `auto` resolves to where the machine chose nothing (model/load.py's `choose_placement` on a CPU).
AUTO_ON_CPU = {"model.attn_implementation": "sdpa", "model.dtype": "float32"}


def choose_weights(machine: Machine, kind: str) -> Setting:
    """The dtype a run's weights are kept in: one plain function of the command and the machine (module docstring).
    On CPU nothing is chosen: `auto` is fp32 there, and bf16 autocast is off."""
    if not machine.gpu:
        return Setting("fp32 weights", "model.dtype", None, "no GPU: fp32 weights, no autocast")
    if not machine.bf16:
        return Setting("fp32 weights", "model.dtype", "float32", f"{machine.name} has no bf16: fp32 throughout")
    if kind == "pretrain":
        return Setting("fp32 weights", "model.dtype", "float32",
                       "fp32 master weights under bf16 autocast, as nanotron pretrains (model.dtype=bfloat16: pure "
                       "bf16, faster and smaller, but updates below bf16's resolution are lost)")
    return Setting("fp32 weights", "model.dtype", "bfloat16",
                   f"{kind} trains bf16 weights, as the alignment-handbook recipes do (model.dtype=float32: fp32 "
                   f"master weights under bf16 autocast)")


def choose_speed(machine: Machine, kind: str) -> list[Setting]:
    """The speed settings for a run of `kind` (sft, dpo, pretrain) on `machine`: a plain function of its facts."""
    if not machine.gpu:
        return [choose_weights(machine, kind),
                Setting("Liger kernels", "training.use_liger_kernel", False, "no GPU"),
                Setting("fused AdamW", "training.optim", None, "not chosen without a GPU (transformers' own "
                        "default applies)"),
                Setting("torch.compile", "training.torch_compile", False, "no GPU"),
                Setting("flash-attn", "model.attn_implementation", None, "no GPU: sdpa"),
                Setting("micro-batch", "speed.fit_micro_batch", False, "no GPU: the recipe's batch as written")]
    liger_why = ("liger-kernel installed: fused RMSNorm, SwiGLU, RoPE" + (
        " and linear cross-entropy (no logits held)" if kind == "pretrain" else
        " (TRL's tiled LM head already holds no logits)") if machine.liger else
        "liger-kernel is not installed: pip install 'smolalign[gpu]'")
    compiled = kind == "pretrain" and not machine.liger  # never both: they crashed together (module docstring)
    compile_why = ("every batch has the same shape: one graph for the run" if compiled else
                   "Liger is on instead: Liger inside torch.compile crashed on an H200 (README, Speed settings)"
                   if kind == "pretrain" else f"{kind} batches change shape (a recompile each)")
    return [
        choose_weights(machine, kind),
        Setting("Liger kernels", "training.use_liger_kernel", machine.liger, liger_why),
        Setting("fused AdamW", "training.optim", "adamw_torch_fused", "one kernel for the whole update"),
        Setting("torch.compile", "training.torch_compile", compiled, compile_why),
        Setting("flash-attn", "model.attn_implementation", "flash_attention_2" if machine.flash_attn else None,
                "flash-attn installed: varlen kernels, no mask" if machine.flash_attn else
                "flash-attn is not installed (pip install flash-attn): sdpa"),
        Setting("micro-batch", "speed.fit_micro_batch", True,
                "the largest that fits this GPU, accumulation keeping the recipe's effective batch"),
    ]


def speed_defaults(settings: list[Setting]) -> dict:
    """The chosen values as recipe defaults (below the YAML and the command line)."""
    out: dict = {}
    for setting in settings:
        if setting.value is not None:
            section, name = setting.key.split(".")
            out.setdefault(section, {})[name] = setting.value
    return out


@dataclass
class SpeedSection:
    fit_micro_batch: bool = False
    """On a GPU (the default there): the largest per-device batch that fits, by `smolalign plan`'s memory estimate,
    with gradient_accumulation_steps changed so that per-device batch x accumulation stays as written."""
    packed_attention: str = "auto"
    """How packed documents are kept apart under sdpa (train/packing.py): auto (per-document sdpa on CPU, the 4-D
    block-causal mask on a GPU), mask, by_document, or varlen (torch's FlashAttention varlen kernel, CUDA only)."""


def fit_micro_batch(per_device: int, accumulation: int, fits) -> tuple[int, int]:
    """The largest micro-batch m dividing per_device x accumulation with fits(m), and the accumulation that keeps
    the product; (1, product) when none fits."""
    product = max(1, per_device) * max(1, accumulation)
    for micro in sorted((m for m in range(1, product + 1) if product % m == 0), reverse=True):
        if fits(micro):
            return micro, product // micro
    return 1, product


def apply_micro_batch(recipe, machine: Machine) -> str | None:
    """Give the recipe the largest micro-batch that fits `machine`'s GPU (module docstring); says what changed."""
    speed = recipe.sections.get("speed")
    if not machine.gpu or not machine.memory or not getattr(speed, "fit_micro_batch", False):
        return None
    from ..plan.memory import HEADROOM, estimate
    from ..plan.model import model_facts
    from ..plan.shape import shape_of, training_value

    per_device = training_value(recipe, "per_device_train_batch_size")
    accumulation = training_value(recipe, "gradient_accumulation_steps")
    if not (isinstance(per_device, int) and isinstance(accumulation, int) and per_device >= 1 and accumulation >= 1):
        return None  # the recipe's checks name the bad value; nothing is fitted around it
    arch = model_facts(recipe.model, recipe.lora_config()).arch

    def fits(micro: int) -> bool:
        shape = shape_of(recipe, micro, machine.strategy, gpu=True, flash_installed=machine.flash_attn)
        return estimate(arch, shape, machine.strategy, machine.processes).total <= HEADROOM * machine.memory

    micro, steps = fit_micro_batch(per_device, accumulation, fits)
    if (micro, steps) == (per_device, accumulation):
        return None
    recipe.training.update(per_device_train_batch_size=micro, gradient_accumulation_steps=steps)
    fitted = "fits" if fits(micro) else "does not fit even at 1 (smolalign plan shows the memory)"
    return (f"micro-batch {micro} x accumulation {steps} instead of the recipe's {per_device} x {accumulation} "
            f"(same effective batch): the largest that {fitted} on {machine.name}; speed.fit_micro_batch=false "
            f"keeps the recipe's")


@dataclass
class Resolved:
    recipe: object
    speed: list
    """The speed settings this machine chose (speed.Setting), for `--print-config` and `smolalign plan`."""
    note: str | None = None
    """What the micro-batch choice changed, if anything."""


def load_command_recipe(recipe_name: str, kind: str, overrides: list[str], defaults: dict,
                        schema, machine: Machine) -> Resolved:
    """The recipe as a run on `machine` (speed.Machine) gets it: defaults with the machine's and the speed settings
    (below the YAML and the command line), the `speed` and `batch` sections, the accumulation that meets a global
    batch on the machine's processes, and the micro-batch that fits."""
    import dataclasses

    from ..config import SCHEMAS, deep_merge, load_recipe
    from .batch import BatchSection, derive_accumulation

    settings = choose_speed(machine, kind)
    defaults = deep_merge(deep_merge(defaults, {"training": base_defaults(machine)}), speed_defaults(settings))
    schema = schema or SCHEMAS[kind]
    schema = dataclasses.replace(schema, sections={**schema.sections, "speed": SpeedSection, "batch": BatchSection})
    recipe = load_recipe(recipe_name, kind, overrides, defaults, schema=schema)
    batch_note = derive_accumulation(recipe, machine.processes)
    if needs_checkpointing_on_cpu(recipe, machine):
        # a default only: a recipe or command line that writes activation_checkpointing keeps its value
        recipe = load_recipe(recipe_name, kind, overrides,
                             deep_merge(defaults, {"training": {"activation_checkpointing": True}}), schema=schema)
        derive_accumulation(recipe, machine.processes)
        if training_value_of(recipe, "activation_checkpointing"):
            return Resolved(recipe, settings, "; ".join(filter(None, [batch_note, CPU_CHECKPOINTING_NOTE])))
    notes = [batch_note, apply_micro_batch(recipe, machine)]
    return Resolved(recipe, settings, "; ".join(filter(None, notes)) or None)


CPU_CHECKPOINTING_NOTE = ("activation checkpointing on: without it this run's activations would not fit in this "
                          "machine's memory (smolalign plan shows them); training.activation_checkpointing=false "
                          "turns it off")


def training_value_of(recipe, name: str):
    from ..plan.shape import training_value

    return training_value(recipe, name)


def needs_checkpointing_on_cpu(recipe, machine: Machine) -> bool:
    """On CPU checkpointing only costs time (~3x), so it is off; but where the activations alone would not fit in
    the machine's memory it is the difference between a slow run and one the kernel kills (the real SmolLM2-135M at
    4 x 2,048 tokens was killed at 15.8 GB without it, and peaked at 7.8 GB with it)."""
    if machine.gpu or not machine.memory or training_value_of(recipe, "activation_checkpointing"):
        return False
    from ..errors import UsageError
    from ..plan.memory import estimate
    from ..plan.model import model_facts
    from ..plan.shape import shape_of

    micro = training_value_of(recipe, "per_device_train_batch_size")
    if not isinstance(micro, int) or micro < 1:
        return False  # the recipe's own checks name the bad value
    try:
        arch = model_facts(recipe.model, recipe.lora_config()).arch
    except (UsageError, OSError, ValueError):
        return False  # a model that cannot be sized here: the run's own checks say why
    memory = estimate(arch, shape_of(recipe, micro, "single", gpu=False, checkpointing=False), "single", 1)
    return memory.total > CPU_SHARE * machine.memory


CPU_SHARE = 0.5
"""On CPU a run may plan for half the available memory: the estimate counts tensors, while the process also holds
the framework, the data and the allocator's slack (the real 135M at 4 x 2,048 tokens: estimated 3.1 GB with
checkpointing, 7.8 GB resident; 13.5 GB without, killed past 15.8 GB)."""


def recipe_value(recipe, key: str):
    from ..plan.shape import training_value

    section, name = key.split(".")
    if section == "training":
        return training_value(recipe, name)
    return getattr(recipe.sections.get(section), name, None)


def explain(settings: list[Setting], recipe, machine: Machine) -> list[str]:
    """One line a setting: on or off in this recipe, and why (the machine's choice, or the recipe's own value)."""
    from ..plan.shape import library_defaults

    defaults = library_defaults(recipe)
    lines = [f"speed settings on {machine.name} (smolalign/train/speed.py; the key after each turns it off):"]
    for setting in settings:
        value = recipe_value(recipe, setting.key)
        if value == "auto" and setting.key in AUTO_ON_CPU:
            value = setting.value or AUTO_ON_CPU[setting.key]  # `auto` resolves as the machine's choice
        chosen = setting.value if setting.value is not None else defaults.get(setting.key.split(".")[-1], value)
        why = setting.why if value == chosen else \
            f"set by the recipe (this machine would choose {chosen}: {setting.why})"
        state = "on " if setting.is_on(value) else "off"
        shown = str(value).lower() if isinstance(value, bool) or value is None else value
        lines.append(f"  {setting.name:14s} {state}  {setting.key}={shown}: {why}")
    return lines
