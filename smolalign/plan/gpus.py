"""The GPUs a plan can be made for (memory as `nvidia-smi` reports it; dense bf16 peak from train/mfu.py), and how an
accelerate config spreads the run: the same config file the training commands' `--accelerate-config` takes."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..train.mfu import peak_flops

MiB = 1024**2
# name -> memory of one device, as nvidia-smi reports it
GPUS = {
    "H100": 81_559 * MiB,  # SXM and PCIe, 80 GB
    "H100 NVL": 95_830 * MiB,
    "H200": 143_771 * MiB,
    "A100": 81_920 * MiB,  # 80 GB; "A100 40GB" below
    "A100 40GB": 40_960 * MiB,
    "L40S": 46_068 * MiB,
    "L4": 23_034 * MiB,
}


@dataclass(frozen=True)
class Gpu:
    name: str
    memory: int
    peak: float | None


def gpu(name: str) -> Gpu:
    """A GPU of the table by name, in any case ("h100", "H200", "A100 40GB")."""
    for known, memory in GPUS.items():
        if known.lower() == name.strip().lower():
            return Gpu(known, memory, peak_flops(known))
    raise UsageError(f"--gpu {name}: not a GPU smolalign knows; one of {', '.join(GPUS)}")


def local_gpu() -> Gpu | None:
    """This machine's GPU, when it has one (its own memory; its peak when the table knows it)."""
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return Gpu(name, torch.cuda.get_device_properties(0).total_memory, peak_flops(name))


@dataclass(frozen=True)
class Launch:
    strategy: str
    processes: int
    source: str


def launch_of(config_name: str | None, gpus: int | None) -> Launch:
    """The strategy and number of processes of a run: from the accelerate config the training command would be
    launched with (`--accelerate-config`), `--gpus` overriding its process count, as `--num-processes` does."""
    if gpus is not None and gpus < 1:
        raise UsageError("--gpus must be at least 1")
    if config_name is None:
        processes = gpus or 1
        return Launch("DDP" if processes > 1 else "single", processes,
                      "no accelerate config: DDP over several GPUs, else one device")
    from ..train.launch import check_accelerate_config, resolve_accelerate_config

    path = resolve_accelerate_config(config_name)
    config = check_accelerate_config(config_name)
    processes = gpus or int(config.get("num_processes") or 1)
    kind = str(config.get("distributed_type", "NO")).upper()
    if kind == "DEEPSPEED":
        stage = int((config.get("deepspeed_config") or {}).get("zero_stage", 2))
        strategy = "ZeRO-3" if stage == 3 else "ZeRO-2" if stage == 2 else "DDP"
    elif kind == "FSDP":
        strategy = "FSDP"
    else:
        strategy = "DDP" if processes > 1 else "single"
    return Launch(strategy, processes, str(path))
