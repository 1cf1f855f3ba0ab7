"""Multi-GPU and multi-node runs go through `accelerate launch`, never a home-made launcher.

`smolalign sft RECIPE --accelerate-config CFG --num-processes N` re-runs the same command under
`accelerate launch --config_file CFG --num_processes N -m smolalign.cli ...` without the launch flags.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..errors import UsageError
from ..resources import shipped_dir

LAUNCH_FLAGS = ("--accelerate-config", "--num-processes")


def inside_launch() -> bool:
    """True in a process started by accelerate/torchrun (they set these for every worker)."""
    return "LOCAL_RANK" in os.environ or "ACCELERATE_LAUNCHED" in os.environ


def resolve_accelerate_config(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise UsageError(f"--accelerate-config '{name}' is a directory: give the config file in it (a YAML file), or "
                         f"one of zero3, fsdp, cpu-ddp")
    shipped = shipped_dir("recipes") / "accelerate" / Path(name).name
    for candidate in (shipped, shipped.with_suffix(".yaml")):
        if candidate.is_file():
            return candidate
    raise UsageError(f"accelerate config '{name}' not found: give a path, or one of zero3, fsdp, cpu-ddp")


def check_accelerate_config(name: str) -> dict:
    """The accelerate config, read and checked as `accelerate launch` would take it, before anything is written:
    its type, its process count, and that it is an accelerate config at all (not a training recipe)."""
    from accelerate.utils import DistributedType

    from ..config import read_yaml

    path = resolve_accelerate_config(name)
    config = read_yaml(path)
    if not isinstance(config, dict) or not config:
        raise UsageError(f"accelerate config {path} is empty: write one with `accelerate config`, or use one of "
                         f"zero3, fsdp, cpu-ddp")
    if "recipe" in config or "training" in config:
        raise UsageError(f"{path} is a smolalign recipe, not an accelerate config: give it as the RECIPE argument, "
                         f"and --accelerate-config one of zero3, fsdp, cpu-ddp (or a file from `accelerate config`)")
    kind = config.get("distributed_type")
    known = [member.value for member in DistributedType]
    if kind is None or str(kind) not in known:
        raise UsageError(f"accelerate config {path}: distributed_type={kind!r} is not one accelerate knows: use "
                         f"one of {', '.join(known)}")
    processes = config.get("num_processes", 1)
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        raise UsageError(f"accelerate config {path}: num_processes={processes!r} must be a whole number >= 1")
    return config


def launched_processes(config_name: str, num_processes: int | None) -> int:
    """How many processes `accelerate launch` will start: --num-processes, else the config's own count."""
    return num_processes or int(check_accelerate_config(config_name).get("num_processes") or 1)


def strip_launch_flags(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in LAUNCH_FLAGS:
            skip = True
            continue
        if arg.split("=", 1)[0] in LAUNCH_FLAGS:
            continue
        out.append(arg)
    return out


def launch_command(config: Path, num_processes: int | None, argv: list[str]) -> list[str]:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    if num_processes is not None:
        command += ["--num_processes", str(num_processes)]
    return command + ["-m", "smolalign.cli", *strip_launch_flags(argv)]


def relaunch(config_name: str, num_processes: int | None) -> int:
    """Run this same command under accelerate; returns its exit code."""
    if num_processes is not None and num_processes < 1:
        raise UsageError(f"--num-processes {num_processes}: give at least 1")
    config = resolve_accelerate_config(config_name)
    command = launch_command(config, num_processes, sys.argv[1:])
    import torch

    env = {**os.environ, "ACCELERATE_LAUNCHED": "1"}
    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "true"  # each worker then joins over gloo on the CPU
    return subprocess.call(command, env=env)
