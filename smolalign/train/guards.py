"""Checks on the built training config and LoRA config, run before anything is written.

TRL and transformers accept many settings that only fail later: a negative learning rate trains backwards,
`gradient_accumulation_steps=0` divides by zero at the first step, `max_length=0` is a bare AssertionError in
TRL's packer, an unknown DPO `loss_type` raises after training started, `num_train_epochs=-2` writes an untrained
model with exit 0, `report_to=[wandb]` without wandb fails inside the Trainer's constructor. Each guard collects
every problem and raises one UsageError naming each key and its fix, as the recipe validator does.
"""

from __future__ import annotations

import importlib.util
import re

from ..errors import UsageError

# transformers' integration name -> (module it imports, what to pip install)
INTEGRATION_PACKAGES = {
    "azure_ml": ("azureml", "azureml-core"), "comet_ml": ("comet_ml", "comet-ml"), "mlflow": ("mlflow", "mlflow"),
    "neptune": ("neptune", "neptune"), "tensorboard": ("tensorboard", "tensorboard"),
    "trackio": ("trackio", "trackio"), "wandb": ("wandb", "wandb"), "codecarbon": ("codecarbon", "codecarbon"),
    "clearml": ("clearml", "clearml"), "dagshub": ("dagshub", "dagshub"), "flyte": ("flytekit", "flytekit"),
    "dvclive": ("dvclive", "dvclive"), "swanlab": ("swanlab", "swanlab"), "kubeflow": ("kubeflow", "kubeflow"),
}


def _raise(problems: list[str], what: str) -> None:
    if problems:
        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        raise UsageError(f"{count} in the {what}: " + "; ".join(problems))


def plain_value(x):
    """Enum members (IntervalStrategy.STEPS) as their plain value ('steps')."""
    return getattr(x, "value", x)


def _check_report_to(report_to, problems: list[str]) -> None:
    from transformers.integrations.integration_utils import (INTEGRATION_TO_CALLBACK,
                                                             get_available_reporting_integrations)

    available = set(get_available_reporting_integrations())
    for name in [report_to] if isinstance(report_to, str) else report_to or []:
        if name in ("none", "all"):
            continue
        if name not in INTEGRATION_TO_CALLBACK:
            problems.append(f"training.report_to names '{name}', which transformers does not know: use one of "
                            f"{', '.join(INTEGRATION_TO_CALLBACK)}, or none")
        elif name not in available:
            module, package = INTEGRATION_PACKAGES.get(name, (name, name))
            if name == "flyte" and importlib.util.find_spec(module):
                continue  # transformers never lists flyte as available; installed is enough
            if importlib.util.find_spec(module):
                problems.append(f"training.report_to names '{name}', installed but switched off here (e.g. by "
                                f"{name.upper()}_DISABLED): unset that, or remove '{name}' from training.report_to")
            else:
                problems.append(f"training.report_to names '{name}', which is not installed: `pip install "
                                f"{package}`, or remove it from training.report_to")


def _check_steps(args, problems: list[str]) -> None:
    for what, steps_key in (("save", "save_steps"), ("eval", "eval_steps"), ("logging", "logging_steps")):
        strategy = plain_value(getattr(args, f"{what}_strategy", "no"))
        steps = getattr(args, steps_key, None)
        if strategy == "steps" and steps is not None and steps <= 0:
            problems.append(f"training.{steps_key}={steps} with {what}_strategy=steps never fires: give a number "
                            f"of steps >= 1 (or a ratio in (0, 1)), or training.{what}_strategy=epoch / no")


def check_training(args, command) -> None:
    """`args`: the built SFTConfig / DPOConfig, or transformers' TrainingArguments for `pretrain`; the command (its
    module, resolve.py's `TrainingCommand`) adds its own checks."""
    problems: list[str] = []
    if args.learning_rate <= 0:
        problems.append(f"training.learning_rate={args.learning_rate} must be > 0 (SmolLM2: 3e-4 for SFT, 1e-6 for DPO)")
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(args, key)
        if value < 1:
            problems.append(f"training.{key}={value} must be >= 1")
    max_length = getattr(args, "max_length", None)
    if max_length is not None and max_length < 1:
        problems.append(f"training.max_length={max_length} must be >= 1 (tokens per row, e.g. 2048)")
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        problems.append(f"training.num_train_epochs={args.num_train_epochs} trains nothing: give epochs > 0, or "
                        f"training.max_steps >= 1")
    _check_steps(args, problems)
    _check_report_to(args.report_to, problems)
    command.check_args(args, problems)
    _raise(problems, "training settings")


def check_eval_data(args, has_eval: bool) -> None:
    """What the Trainer's constructor refuses about evaluation, checked while nothing is written yet."""
    problems: list[str] = []
    strategy = plain_value(args.eval_strategy)
    if strategy != "no" and not has_eval:
        problems.append(f"training.eval_strategy={strategy} needs evaluation data: set data.eval_split or "
                        f"data.eval_fraction, or training.eval_strategy=no")
    if args.load_best_model_at_end and not has_eval:
        problems.append("training.load_best_model_at_end=true needs evaluation data: set data.eval_split or "
                        "data.eval_fraction, or turn it off")
    if (plain_value(args.save_strategy) == "best" or args.load_best_model_at_end) and args.metric_for_best_model is None:
        problems.append("training.save_strategy=best / load_best_model_at_end needs training.metric_for_best_model, "
                        "e.g. eval_loss")
    _raise(problems, "training settings")


def linear_module_names(model) -> list[str]:
    """The names LoRA's target_modules can match: the last part of every nn.Linear's name (q_proj, ...)."""
    import torch

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear)})


def _matches(target: str, names: list[str]) -> bool:
    # peft's rule: a module matches a target when its full name is the target or ends with "." + target
    return any(name == target or name.endswith("." + target) for name in names)


def check_lora(model, lora_config) -> None:
    """A LoraConfig against the model it will wrap. `model` may be None: then only the config's own values."""
    if lora_config is None:
        return
    problems: list[str] = []
    if lora_config.r < 1:
        problems.append(f"lora.r={lora_config.r} must be >= 1 (the adapter rank, e.g. 16)")
    if lora_config.lora_alpha <= 0:
        problems.append(f"lora.lora_alpha={lora_config.lora_alpha} must be > 0 (often 2 x lora.r)")
    if not 0 <= lora_config.lora_dropout < 1:
        problems.append(f"lora.lora_dropout={lora_config.lora_dropout} must be in [0, 1)")
    if model is not None:
        names = [name for name, _ in model.named_modules() if name]
        linear = linear_module_names(model)
        targets = lora_config.target_modules
        if isinstance(targets, str) and targets != "all-linear":
            if not any(re.fullmatch(targets, name) for name in names):
                problems.append(f"lora.target_modules={targets!r} (a regular expression) matches no module of the "
                                f"model: its linear layers are {', '.join(linear)}")
        elif targets is not None and not isinstance(targets, str):
            missing = sorted(t for t in targets if not _matches(t, names))
            if missing:
                problems.append(f"lora.target_modules names {', '.join(missing)}, not in the model: choose from its "
                                f"linear layers {', '.join(linear)}, or all-linear")
        missing_saved = sorted(t for t in (lora_config.modules_to_save or []) if not _matches(t, names))
        if missing_saved:
            problems.append(f"lora.modules_to_save names {', '.join(missing_saved)}, not in the model")
        layers = lora_config.layers_to_transform
        count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
        if layers is not None and count is not None:
            wanted = [layers] if isinstance(layers, int) else list(layers)
            outside = [i for i in wanted if not 0 <= i < count]
            if outside:
                problems.append(f"lora.layers_to_transform has {outside}, outside the model's layers 0-{count - 1}")
    _raise(problems, "lora section")


# attention implementation -> (the module it imports, what to install)
FLASH_PACKAGES = {"flash_attention_2": ("flash_attn", "flash-attn"),
                  "flash_attention_3": ("flash_attn_interface", "flash-attn 3 (flash_attn_interface)")}


def check_machine(recipe, machine) -> None:
    """What the recipe asks of this machine (`speed.Machine`): a GPU, a package. Checked before anything is loaded
    or written, since the libraries fail only at the first training step (flash-attn through transformers'
    `kernels` fallback, Liger at import)."""
    problems: list[str] = []
    attention = getattr(recipe.model, "attn_implementation", "auto") or "auto"
    if attention in FLASH_PACKAGES:
        module, package = FLASH_PACKAGES[attention]
        if not machine.gpu:
            problems.append(f"model.attn_implementation={attention} needs a CUDA GPU and this machine has none: use "
                            f"sdpa, or auto (which picks it here)")
        elif importlib.util.find_spec(module) is None:
            problems.append(f"model.attn_implementation={attention} needs {package}, which is not installed: "
                            f"install it, or use sdpa (auto picks flash attention only where it is installed)")
    elif "/" in attention and importlib.util.find_spec("kernels") is None:
        problems.append(f"model.attn_implementation={attention} is a hub kernel, which needs the `kernels` package "
                        f"and the hub: use sdpa")
    speed = recipe.sections.get("speed")
    packed = getattr(speed, "packed_attention", "auto")
    from .packing import PACKED_ATTENTION, varlen_available

    if packed not in PACKED_ATTENTION:
        problems.append(f"speed.packed_attention={packed!r} is not one of {', '.join(PACKED_ATTENTION)}")
    elif packed == "varlen" and not varlen_available():
        problems.append("speed.packed_attention=varlen needs a CUDA GPU and torch's varlen kernel (torch >= 2.10): "
                        "use auto")
    elif packed in ("by_document", "varlen") and attention not in ("auto", "sdpa"):
        problems.append(f"speed.packed_attention={packed} replaces sdpa, but model.attn_implementation={attention}: "
                        f"set model.attn_implementation=sdpa, or speed.packed_attention=auto")
    if recipe.training.get("use_liger_kernel"):
        if not machine.liger:
            problems.append("training.use_liger_kernel=true needs liger-kernel, which is not installed: pip install "
                            "'smolalign[gpu]', or training.use_liger_kernel=false")
        elif not machine.gpu:
            problems.append("training.use_liger_kernel=true needs a CUDA GPU (Liger's kernels are Triton's): "
                            "training.use_liger_kernel=false on this machine")
    _raise(problems, "settings for this machine")
