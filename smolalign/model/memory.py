"""Memory per device of a training step, from the architecture alone: weights, gradients, optimizer states and
activations, for each way of spreading a run over W devices. Plain arithmetic, no torch.

Weights, gradients and optimizer states (bytes; N parameters, T trainable ones (all, or LoRA's adapters), p bytes
a stored weight: 2 for bf16, 4 for fp32):
- single device: weights pN, gradients pT, AdamW's m and v 2pT. torch keeps gradients and optimizer states in the
  weights' dtype; with fp32 weights under bf16 autocast those fp32 weights are the master copy, so there is none
  besides them.
- DDP: the same, plus the buckets DDP all-reduces through, one more copy of the gradients (PyTorch's
  DistributedDataParallel docs: `gradient_as_bucket_view=False`, the default, costs "the total gradients size").
- ZeRO-2: DeepSpeed's bf16 engine holds the weights in bf16, whole (2N), and partitions the bf16 gradients, the fp32
  master weights and the fp32 m and v: (2 + 12)T/W (the ZeRO paper, Rajbhandari et al. 2020, section 3: K = 12).
- ZeRO-3: everything partitioned, (2N + 14T)/W, plus the gathered layers below.
- FSDP (FULL_SHARD): the stored dtype partitioned, (pN + 3pT)/W, plus the gathered layers below.
- Gathered layers (ZeRO-3, FSDP): the root unit (embeddings, final norm) stays whole while a step runs; two decoder
  layers are whole at a time (the one computing and the one prefetched), and one layer's gradients before they are
  reduce-scattered.
- DPO's reference model adds its weights, sharded like the policy's, and nothing else (frozen; with LoRA there is
  no second model: the reference is the base with the adapter off).

Activations (bytes a token; h hidden, k key/value width, I FFN width, H heads, V vocabulary, r the residual
stream's bytes (the stored weights'), a the compute dtype's (2 under bf16)): the tensors autograd keeps for backward
in transformers' Llama, which tests/test_plan.py checks against the tensors a real model saves, on CPU (within 1%):
- a decoder layer: two RMSNorms (4 + r)h each (each upcasts to fp32), the projections' inputs c·a·h (c = 2, or 5
  under autocast, which casts the input once per projection), attention a(2h + 2k) + 4H (q, k, v, the output and an
  fp32 log-sum-exp; the output is also o_proj's input), SwiGLU 4aI (gate, up, silu(gate), their product).
- the loss: the final norm (4 + r + a)h and transformers' fp32 log-softmax, 4V; while it runs, the logits and their
  gradient, (a + 4)V more. TRL's SFT and DPO score tokens through a tiled LM head: no logits.
- Liger kernels: RMSNorm r·h + 4, SwiGLU 3aI, and the fused linear cross-entropy no logits at all (it keeps its
  input's gradient, a·h, and the head's fp32 gradient, 4Vh, once).
- gradient checkpointing keeps each layer's input (r·h) and recomputes one layer at a time in backward; without it,
  backward holds about one layer's activations more (their gradients).
- k is the key/value width with flash attention or sdpa without a mask (GQA in the kernel); with a mask the keys are
  repeated per query head (k = h). Packed rows with a 4-D block-causal mask add the boolean mask, b·s² bytes, and the
  additive bias sdpa makes from it in every layer and keeps for backward, a·b·s².
- eager attention (`attn_implementation: eager`) computes the scores itself: its keys and values are repeated per
  query head (k = h), and each layer keeps the [rows, H, s, s] softmax output for backward, in fp32 (softmax runs
  there) and, where the compute dtype is narrower, its cast back to it: (4 + a)·H·s² a row (4·H·s² in fp32). At
  2,048 tokens that is 216 MiB a row a layer for SmolLM2-135M in bf16: the micro-batch that fits is far smaller.
- fp32 weights under bf16 autocast: autocast keeps a bf16 copy of every projection's weight for the step, 2 bytes each.
"""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("single", "DDP", "ZeRO-2", "ZeRO-3", "FSDP")
GiB = 1024**3


@dataclass(frozen=True)
class Arch:
    """What memory and FLOPs depend on: counts read from a model built on the meta device (see plan/model.py)."""

    parameters: int
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    layer_parameters: int
    """One decoder layer."""
    root_parameters: int
    """Everything outside the decoder layers: embeddings, final norm (and an untied head)."""
    linear_parameters: int
    """Weights that a projection multiplies by (every linear layer and the head): autocast copies these."""
    trainable: int | None = None
    """Parameters that train (LoRA's adapters); None: all of them."""

    @property
    def trained(self) -> int:
        return self.parameters if self.trainable is None else self.trainable


@dataclass(frozen=True)
class Shape:
    """One micro-batch as the run computes it."""

    rows: int
    """Sequences a forward pass sees (DPO: chosen and rejected, twice the pairs)."""
    sequence: int
    weight_bytes: int = 2
    compute_bytes: int = 2
    checkpointing: bool = False
    liger: bool = False
    tiled_head: bool = False
    """TRL's SFT and DPO: log-probs through a tiled LM head, no logits."""
    block_mask: bool = False
    """A 4-D block-causal mask (packed rows under sdpa or eager attention)."""
    reference: bool = False
    """DPO: a frozen reference model beside the policy."""
    eager: bool = False
    """Eager attention: the L² scores held (module docstring), keys and values repeated per head."""

    @property
    def tokens(self) -> int:
        return self.rows * self.sequence


@dataclass(frozen=True)
class Memory:
    weights: float
    gradients: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations


def arch_of(config, lora_config=None) -> Arch:
    """Counts of a config's model built on the meta device; with a LoRA config, peft's own adapters counted too."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    unique = {id(p): p for p in model.parameters()}
    parameters = sum(p.numel() for p in unique.values())
    layers = model.get_decoder().layers
    layer = sum(p.numel() for p in layers[0].parameters())
    linear = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)}
    heads = config.num_attention_heads
    root, trainable = parameters - len(layers) * layer, None
    if lora_config is not None:
        from peft import get_peft_model

        with torch.device("meta"):
            peft_model = get_peft_model(model, lora_config)
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        parameters = sum(p.numel() for p in peft_model.parameters())
    return Arch(parameters=parameters, layers=len(layers), hidden=config.hidden_size, heads=heads,
                kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
                intermediate=config.intermediate_size, vocab=config.vocab_size, layer_parameters=layer,
                root_parameters=root, linear_parameters=sum(linear.values()),
                trainable=trainable)


def model_states(arch: Arch, shape: Shape, strategy: str, world: int) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes on one device."""
    n, t, p, w = arch.parameters, arch.trained, shape.weight_bytes, max(1, world)
    gathered = p * (arch.root_parameters + 2 * arch.layer_parameters)
    layer_grads = p * arch.layer_parameters * t / n
    reference = n * (2 if strategy.startswith("ZeRO") else p) if shape.reference else 0
    if strategy in ("single", "DDP"):
        buckets = p * t if strategy == "DDP" and w > 1 else 0
        return p * n + reference, p * t + buckets, 2 * p * t
    if strategy == "ZeRO-2":
        return 2 * n + reference, 2 * t / w, 12 * t / w
    if strategy == "ZeRO-3":
        return 2 * n / w + 2 * (arch.root_parameters + 2 * arch.layer_parameters) + reference / w, \
            2 * t / w + 2 * arch.layer_parameters * t / n, 12 * t / w
    if strategy == "FSDP":
        return p * n / w + gathered + reference / w, p * t / w + layer_grads, 2 * p * t / w
    raise ValueError(f"unknown strategy {strategy!r}: one of {', '.join(STRATEGIES)}")


def layer_activations(arch: Arch, shape: Shape) -> float:
    """Bytes a token that one decoder layer keeps for backward."""
    h, i, r, a = arch.hidden, arch.intermediate, shape.weight_bytes, shape.compute_bytes
    k = h if shape.block_mask or shape.eager else arch.kv_heads * arch.head_dim
    autocast = r != a
    norms = 2 * (r * h + 4 if shape.liger else (4 + r) * h)  # Liger's RMSNorm keeps its input and 1/rms only
    inputs = (5 if autocast else 2) * a * h
    attention = a * (2 * h + 2 * k) + 4 * arch.heads
    mlp = (3 if shape.liger else 4) * a * i
    return norms + inputs + attention + mlp


def activations(arch: Arch, shape: Shape) -> tuple[float, float]:
    """(bytes saved for backward, bytes more at the step's peak) for one micro-batch."""
    h, v, r, a = arch.hidden, arch.vocab, shape.weight_bytes, shape.compute_bytes
    tokens = shape.tokens
    square = shape.rows * shape.sequence**2 if shape.block_mask else 0
    layer = tokens * layer_activations(arch, shape) + a * square  # sdpa's additive bias, kept in every layer
    if shape.eager:  # the softmax's fp32 output, and its cast to the compute dtype where that is narrower
        layer += (4 + (a if a != 4 else 0)) * arch.heads * shape.rows * shape.sequence**2
    stored = arch.layers * (tokens * r * h if shape.checkpointing else layer)
    if shape.liger and not shape.tiled_head:  # fused linear cross-entropy: its input's gradient, and the head's
        loss_saved, loss_peak, fixed = (r + 2 * a) * h, 0.0, 4.0 * v * h
    elif shape.tiled_head:
        loss_saved, loss_peak, fixed = (4 + r + a) * h, 0.0, 0.0
    else:
        loss_saved, loss_peak, fixed = (4 + r + a) * h + 4 * v, (a + 4) * v, 0.0
    saved = stored + tokens * loss_saved + fixed + square  # the boolean mask, once
    if r != a:
        saved += 2 * arch.linear_parameters  # autocast's bf16 copies of the weights
    return saved, layer + tokens * loss_peak


def estimate(arch: Arch, shape: Shape, strategy: str, world: int) -> Memory:
    weights, gradients, optimizer = model_states(arch, shape, strategy, world)
    saved, peak = activations(arch, shape)
    return Memory(weights, gradients, optimizer, saved + peak)


HEADROOM = 0.85
"""A run fits when the estimate is within this share of the device's memory: the CUDA context, the caching
allocator's reserve and fragmentation, and what the estimate leaves out (buffers, communication) take the rest."""


def verdict(total: float, device_memory: float | None) -> str:
    if not device_memory:
        return "n/a"
    if total <= HEADROOM * device_memory:
        return "yes"
    return "tight" if total <= device_memory else "no"
