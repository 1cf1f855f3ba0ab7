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
says which are on and why. Where a recipe writes Liger or compile, the machine's choice of the other gives way
(`keep_liger_and_compile_apart`).
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
    """How the run is spread: single, DDP, ZeRO-2, ZeRO-3 or FSDP (model/memory.py)."""


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
    checkpointing even on CPU, where both only cost time (~3x); pinned memory only speeds host-to-GPU copies. A NaN
    or infinite loss is logged as it is, not hidden (callbacks.py's StopOnNonFinite stops the run on it)."""
    return {"bf16": machine.gpu and machine.bf16, "activation_checkpointing": machine.gpu,
            "dataloader_pin_memory": machine.gpu, "logging_nan_inf_filter": False}


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


def choose_weights(machine: Machine, command) -> Setting:
    """The dtype a run's weights are kept in: the command's own choice (`command.WEIGHTS`, module docstring) on a
    GPU with bf16. On CPU nothing is chosen: `auto` is fp32 there, and bf16 autocast is off."""
    if not machine.gpu:
        return Setting("fp32 weights", "model.dtype", None, "no GPU: fp32 weights, no autocast")
    if not machine.bf16:
        return Setting("fp32 weights", "model.dtype", "float32", f"{machine.name} has no bf16: fp32 throughout")
    if command.WEIGHTS == "float32":
        return Setting("fp32 weights", "model.dtype", "float32",
                       f"{command.KIND}: fp32 master weights under bf16 autocast, as nanotron pretrains "
                       f"(model.dtype=bfloat16: pure bf16, faster and smaller, but updates below bf16's resolution "
                       f"are lost)")
    return Setting("fp32 weights", "model.dtype", "bfloat16",
                   f"{command.KIND} trains bf16 weights, as the alignment-handbook recipes do (model.dtype=float32: "
                   f"fp32 master weights under bf16 autocast)")


def choose_speed(machine: Machine, command) -> list[Setting]:
    """The speed settings for a run of `command` (a training command module: its KIND, SAME_SHAPE, FUSED_LOSS and
    WEIGHTS) on `machine`: a plain function of their facts."""
    kind = command.KIND
    if not machine.gpu:
        return [choose_weights(machine, command),
                Setting("Liger kernels", "training.use_liger_kernel", False, "no GPU"),
                Setting("fused AdamW", "training.optim", None, "not chosen without a GPU (transformers' own "
                        "default applies)"),
                Setting("torch.compile", "training.torch_compile", False, "no GPU"),
                Setting("flash-attn", "model.attn_implementation", None, "no GPU: sdpa"),
                Setting("micro-batch", "speed.fit_micro_batch", False, "no GPU: the recipe's batch as written")]
    liger_why = ("liger-kernel installed: fused RMSNorm, SwiGLU, RoPE" + (
        " and linear cross-entropy (no logits held)" if command.FUSED_LOSS else
        " (TRL's tiled LM head already holds no logits)") if machine.liger else
        "liger-kernel is not installed: pip install 'smolalign[gpu]'")
    compiled = command.SAME_SHAPE and not machine.liger  # never both: they crashed together (module docstring)
    compile_why = ("every batch has the same shape: one graph for the run" if compiled else
                   "Liger is on instead: Liger inside torch.compile crashed on an H200 (README, Speed settings)"
                   if command.SAME_SHAPE else f"{kind} batches change shape (a recompile each)")
    return [
        choose_weights(machine, command),
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


def fit_micro_batch(per_device: int, accumulation: int, fits) -> tuple[int, int]:
    """The largest micro-batch m dividing per_device x accumulation with fits(m), and the accumulation that keeps
    the product; (1, product) when none fits."""
    product = max(1, per_device) * max(1, accumulation)
    for micro in sorted((m for m in range(1, product + 1) if product % m == 0), reverse=True):
        if fits(micro):
            return micro, product // micro
    return 1, product


def apply_micro_batch(recipe, command, machine: Machine, arch) -> str | None:
    """Give the recipe the largest micro-batch that fits `machine`'s GPU (module docstring); says what changed.
    `arch`: the model's architecture (model/memory.py), or None where it cannot be sized here."""
    speed = recipe.sections.get("speed")
    if not machine.gpu or not machine.memory or arch is None or not getattr(speed, "fit_micro_batch", False):
        return None
    from ..model.memory import HEADROOM, estimate

    per_device = recipe.value("per_device_train_batch_size")
    accumulation = recipe.value("gradient_accumulation_steps")
    if not (isinstance(per_device, int) and isinstance(accumulation, int) and per_device >= 1 and accumulation >= 1):
        return None  # the recipe's checks name the bad value; nothing is fitted around it

    def fits(micro: int) -> bool:
        shape = command.memory_shape(recipe, micro, machine.strategy, gpu=True, flash_installed=machine.flash_attn)
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
    notes: list[str]
    """What the machine changed of the recipe as written (accumulation, checkpointing, micro-batch), if anything."""


def model_arch(recipe):
    """The architecture of the recipe's model without weights (model/memory.py), or None where it cannot be read
    here: the run's own checks then say why."""
    from ..errors import UsageError
    from ..model.info import model_config
    from ..model.memory import arch_of

    model = recipe.model
    try:
        config, _, _ = model_config(model.name_or_path, model.preset, model.gguf_file, model.trust_remote_code)
        return arch_of(config, recipe.lora_config())
    except (UsageError, OSError, ValueError):
        return None


def load_run_recipe(recipe_name: str, command, overrides: list[str], machine: Machine, arch_for=model_arch) -> Resolved:
    """The recipe as a run of `command` on `machine` gets it, loaded once (config/loader.py): the command's defaults
    with the machine's and the speed settings (below the YAML and the command line); then what depends on the run's
    size: the accumulation that meets a global batch on the machine's processes, activation checkpointing on a CPU
    short of memory, and the micro-batch that fits the GPU. `arch_for(recipe)` sizes the model (plan sizes a model
    that a shipped recipe has not written yet)."""
    from ..config import deep_merge, load_recipe
    from .batch import derive_accumulation

    settings = choose_speed(machine, command)
    defaults = deep_merge(deep_merge(command.defaults(), {"training": base_defaults(machine)}),
                          speed_defaults(settings))
    recipe = load_recipe(recipe_name, command.KIND, overrides, defaults, schema=command.SCHEMA)
    notes = [derive_accumulation(recipe, machine.processes), keep_liger_and_compile_apart(recipe, command, machine),
             *getattr(command, "recipe_notes", lambda recipe: [])(recipe)]
    arch = arch_for(recipe)
    if needs_checkpointing_on_cpu(recipe, command, machine, arch):
        recipe.training["activation_checkpointing"] = True
        notes.append(CPU_CHECKPOINTING_NOTE)
    else:
        notes.append(apply_micro_batch(recipe, command, machine, arch))
    return Resolved(recipe, settings, [note for note in notes if note])


def keep_liger_and_compile_apart(recipe, command, machine: Machine) -> str | None:
    """Liger and torch.compile are never on together (module docstring), also when a recipe writes one of them:
    the one the recipe writes wins and the machine's choice of the other gives way; a recipe that turns Liger off
    gets compile where every batch has the same shape. Both written on is refused. Says what changed, if anything."""
    from ..errors import UsageError

    if not machine.gpu:
        return None
    liger, compiled = recipe.value("use_liger_kernel"), recipe.value("torch_compile")
    wrote_liger, wrote_compile = recipe.writes("training.use_liger_kernel"), recipe.writes("training.torch_compile")
    if liger and compiled:
        if wrote_liger and wrote_compile:
            raise UsageError("training.use_liger_kernel and training.torch_compile are both on: together they "
                             "crashed on an H200 (Triton CompilationError, then an illegal memory access); set one "
                             "of them to false")
        written, off = ("use_liger_kernel", "torch_compile") if wrote_liger else ("torch_compile", "use_liger_kernel")
        recipe.training[off] = False
        return f"training.{off}=false: the recipe turns on training.{written}, and the two crashed together on an H200"
    if wrote_liger and not liger and not wrote_compile and not compiled and command.SAME_SHAPE:
        recipe.training["torch_compile"] = True
        return ("training.torch_compile=true: the recipe turns Liger off, and every pretraining batch has the same "
                "shape (training.torch_compile=false keeps eager)")
    return None


CPU_CHECKPOINTING_NOTE = ("activation checkpointing on: without it this run's activations would not fit in this "
                          "machine's memory (smolalign plan shows them); training.activation_checkpointing=false "
                          "turns it off")


def needs_checkpointing_on_cpu(recipe, command, machine: Machine, arch) -> bool:
    """On CPU checkpointing only costs time (~3x), so it is off; but where the activations alone would not fit in
    the machine's memory it is the difference between a slow run and one the kernel kills (the real SmolLM2-135M at
    4 x 2,048 tokens was killed at 15.8 GB without it, and peaked at 7.8 GB with it). A default only: a recipe or
    command line that writes the key keeps its value."""
    if machine.gpu or not machine.memory or arch is None or recipe.writes("training.activation_checkpointing") \
            or recipe.value("activation_checkpointing"):
        return False
    from ..model.memory import estimate

    micro = recipe.value("per_device_train_batch_size")
    if not isinstance(micro, int) or micro < 1:
        return False  # the recipe's own checks name the bad value
    memory = estimate(arch, command.memory_shape(recipe, micro, "single", gpu=False, flash_installed=False,
                                                 checkpointing=False), "single", 1)
    return memory.total > CPU_SHARE * machine.memory


CPU_SHARE = 0.5
"""On CPU a run may plan for half the available memory: the estimate counts tensors, while the process also holds
the framework, the data and the allocator's slack (bench/plan_memory.py and the README's memory notes)."""


def recipe_value(recipe, key: str):
    section, name = key.split(".")
    if section == "training":
        return recipe.value(name)
    return getattr(recipe.sections.get(section), name, None)


def explain(settings: list[Setting], recipe, machine: Machine) -> list[str]:
    """One line a setting: on or off in this recipe, and why (the machine's choice, or the recipe's own value)."""
    from ..config.schema import training_defaults

    library = training_defaults(*recipe.training_spec)
    lines = [f"speed settings on {machine.name} (smolalign/train/speed.py; the key after each turns it off):"]
    for setting in settings:
        value = recipe_value(recipe, setting.key)
        if value == "auto" and setting.key in AUTO_ON_CPU:
            value = setting.value or AUTO_ON_CPU[setting.key]  # `auto` resolves as the machine's choice
        chosen = setting.value if setting.value is not None else library.get(setting.key.split(".")[-1], value)
        why = setting.why if value == chosen else \
            f"set by the recipe (this machine would choose {chosen}: {setting.why})"
        state = "on " if setting.is_on(value) else "off"
        shown = str(value).lower() if isinstance(value, bool) or value is None else value
        lines.append(f"  {setting.name:14s} {state}  {setting.key}={shown}: {why}")
    return lines
