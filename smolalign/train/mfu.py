"""Model FLOPs utilisation, by the convention everyone quotes (PaLM appendix B, nanoGPT's `estimate_mfu`).

FLOPs per trained token = 6N + 12·L·H·Q·T: 6N for the forward and backward matmuls over N parameters (tied
embeddings counted once: the output projection is the one that costs), plus attention's scores and values over
a sequence of T tokens (L layers, H heads of Q dims). MFU = achieved FLOP/s over the devices' dense bf16 peak.
Attention recomputation, padding and the optimizer are not counted: MFU is model work, not hardware work.
Used by pretraining's logs, by `smolalign plan` (time at a stated MFU) and by the benchmarks.
"""

from __future__ import annotations

import os

# Dense bf16 peak FLOP/s by device name (vendor data sheets; sparse figures are twice these).
PEAK_BF16 = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
)


def flops_per_token(parameters: int, config, sequence_length: int) -> float:
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 6.0 * parameters + 12.0 * layers * heads * head_dim * sequence_length


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a device named like torch names it ("NVIDIA H100 80GB HBM3") or plainly ("H100")."""
    for key, peak in PEAK_BF16:
        if key.lower() in device_name.lower():
            return peak
    return None


def device_peak_flops() -> tuple[float | None, str]:
    """(peak FLOP/s of one device, its name); None on CPU or an unknown GPU. `SMOLALIGN_PEAK_TFLOPS` overrides."""
    import torch

    override = os.environ.get("SMOLALIGN_PEAK_TFLOPS")
    if not torch.cuda.is_available():
        return (float(override) * 1e12 if override else None), "cpu"
    name = torch.cuda.get_device_name()
    if override:
        return float(override) * 1e12, name
    return peak_flops(name), name


def mfu(tokens_per_second: float, flops_token: float, peak: float | None, processes: int) -> float | None:
    if not peak or tokens_per_second <= 0:
        return None
    return tokens_per_second * flops_token / (peak * max(1, processes))


def training_flops(size, parameters: int, config) -> float:
    """FLOPs of a run's phases (train/size.py) by the convention above, each at its own sequence length."""
    return sum(phase.tokens * flops_per_token(parameters, config, phase.sequence) for phase in size.phases)
