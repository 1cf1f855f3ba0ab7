"""How packed SFT batches reach the model: one row per packed bin, with an explicit block-causal mask.

TRL's BFD packing fills rows of up to `max_length` tokens with whole documents and, by default, flattens the
whole batch into ONE padding-free sequence. Flash attention's varlen kernels handle that in linear memory; sdpa
and eager attention instead build a block-diagonal mask over the flattened length, so attention costs
(batch x max_length)^2. `PackedRowsCollator` keeps each packed row as a row: shape [batch, max_length].
Attention then costs batch x max_length^2.

Documents in a row must never see each other. transformers can infer that from per-document position ids, but
only while no attention mask and no KV cache is given; a caller that passes either silently gets a plain causal
mask across documents. So the collator builds the mask itself: a 4-D [batch, 1, L, L] block-causal mask (a query
sees the keys of its own document up to itself), which transformers hands to the attention kernel unchanged.
Padding tokens see only themselves, so no softmax row is empty.

On CPU with sdpa there is a cheaper way that is just as explicit: the collator passes the document offsets
(`cu_seq_lens_q`, as TRL's padding-free batches do for flash attention) and a registered attention function,
`sdpa_by_document`, runs causal sdpa on each document alone. No L x L mask is built, and each document costs its
own length squared (halved by `is_causal`) instead of the whole row's: 1.22x the 4-D mask on variable-length
chat data, about as cheap per real token as TRL's length-grouped padded batches (bench/sft_throughput.py). On GPU
the per-document loop is bound by kernel launches. There the same offsets can feed PyTorch's own FlashAttention
varlen kernel (`torch.nn.attention.varlen.varlen_attn`, in torch's CUDA build, no flash-attn package): one launch
for the batch, no mask, no cross-document work (`sdpa_varlen`). Which way packed documents are kept apart is
`speed.packed_attention` (`choose_packed_attention`): `auto` is per-document sdpa on CPU and the 4-D mask on a GPU
until bench/gpu.sh has measured varlen there; `varlen` opts in.

Two Trainer counters read `inputs["attention_mask"].sum()` as "real tokens", which is true only of a 2-D padding
mask, and fall back to other counts without one. For packed rows `use_packed_rows` points both at the
non-padding input ids instead (see `_count_real_tokens`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

VARLEN_ATTENTION = {"flash_attention_2", "flash_attention_3", "flash_attention_4"}
# sdpa takes a boolean mask in any model dtype; eager adds the mask to the scores, flex adds it in a score_mod.
BOOLEAN_MASK_ATTENTION = {"sdpa"}


def block_causal_mask(position_ids, padding, additive: bool = False):
    """[batch, 1, L, L] mask from per-document position ids (0 starts a document) and a [batch, L] padding mask
    (1 = real token). Boolean (True = may attend) or additive (0 = attend, float32 min = blocked)."""
    import torch

    real = padding.bool()
    document = (position_ids == 0).cumsum(-1)
    length = position_ids.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()
    allowed = (document[:, :, None] == document[:, None, :]) & causal & real[:, :, None] & real[:, None, :]
    allowed |= torch.eye(length, dtype=torch.bool, device=position_ids.device)  # padding sees itself
    allowed = allowed[:, None]
    if not additive:
        return allowed
    blocked = torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device)
    return blocked.masked_fill_(~allowed, torch.finfo(torch.float32).min)


DOCUMENT_ATTENTION = "sdpa_by_document"
VARLEN_DOCUMENT_ATTENTION = "sdpa_varlen"
PACKED_ATTENTION = ("auto", "mask", "by_document", "varlen")


def choose_packed_attention(setting: str, attn_implementation: str, device_type: str) -> str:
    """How packed documents are kept apart: `kernel` (flash-attn reads the boundaries from position ids),
    `by_document` (sdpa one document at a time), `varlen` (torch's varlen flash kernel over the offsets) or `mask`
    (the 4-D block-causal mask, which every kernel takes). `setting` is the recipe's `speed.packed_attention`."""
    if attn_implementation in VARLEN_ATTENTION:
        return "kernel"
    if setting == "auto":
        return "by_document" if attn_implementation == "sdpa" and device_type == "cpu" else "mask"
    if setting in ("by_document", "varlen") and attn_implementation != "sdpa":
        return "mask"  # both replace sdpa; eager and flex keep the mask (check_machine says so before a run)
    return setting


def varlen_available() -> bool:
    """torch's FlashAttention varlen kernel: in the CUDA build from torch 2.10 on."""
    import torch

    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def document_offsets(position_ids, padding):
    """Offsets into the flattened [batch x L] tokens where a segment starts, then the total: a segment is one
    document (position id 0 starts one) or the padding at the end of a row, so no segment crosses a row."""
    import torch

    real = padding.bool()
    after_real = torch.ones_like(real)
    after_real[:, 1:] = real[:, :-1]
    starts = ((position_ids == 0) & real) | (~real & after_real)
    starts[:, 0] = True
    offsets = starts.flatten().nonzero().flatten()
    return torch.cat([offsets, offsets.new_tensor([real.numel()])]).to(torch.int32)


def sdpa_by_document(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     cu_seq_lens_q=None, **kwargs):
    """Causal sdpa on each document of packed rows alone ([batch, heads, L, dim] in, [batch, L, heads, dim]
    out, as transformers' attention functions). Without offsets (a caller other than the packed-rows
    collator, e.g. `generate`) it is plain sdpa."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    batch, heads, length, dim = query.shape

    def flat(states):  # [1, heads, batch x L, dim]: one token axis that segments slice
        return states.transpose(0, 1).reshape(1, states.shape[1], batch * length, dim)

    q, k, v = flat(query), flat(key), flat(value)
    offsets = cu_seq_lens_q.tolist()
    # enable_gqa: the CPU kernel reads the shared key heads in place instead of copies repeated per query head
    out = torch.cat([torch.nn.functional.scaled_dot_product_attention(
        q[:, :, start:end], k[:, :, start:end], v[:, :, start:end], is_causal=True, scale=scaling,
        enable_gqa=k.shape[1] != heads, dropout_p=dropout if module.training else 0.0)
        for start, end in zip(offsets, offsets[1:])], dim=2)
    return out.view(heads, batch, length, dim).permute(1, 2, 0, 3), None


@functools.cache
def _varlen_parameters() -> frozenset[str]:
    import inspect

    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)


def _causal_varlen(query, key, value, offsets, longest: int, scale, gqa: bool):
    """torch's varlen kernel, causal: torch 2.11 takes `is_causal`, later ones a (left, right) window of (-1, 0)."""
    from torch.nn.attention.varlen import varlen_attn

    accepts = _varlen_parameters()
    causal = {"is_causal": True} if "is_causal" in accepts else {"window_size": (-1, 0)}
    extra = {}
    if gqa and "enable_gqa" in accepts:
        extra = {"enable_gqa": True}
    elif gqa:  # torch 2.11's kernel has no enable_gqa (it raised on an H200): each key head repeated per query head
        repeats = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(repeats, dim=1), value.repeat_interleave(repeats, dim=1)
    return varlen_attn(query, key, value, offsets, offsets, longest, longest, scale=scale, **causal, **extra)


def sdpa_varlen(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, cu_seq_lens_q=None,
                max_length_q=None, kernel=None, **kwargs):
    """Packed rows through one varlen kernel call over the document offsets ([batch, heads, L, dim] in, [batch,
    L, heads, dim] out). `kernel` stands in for torch's CUDA kernel in CPU tests; without offsets it is sdpa."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    batch, heads, length, dim = query.shape

    def flat(states):  # [batch x L, heads, dim]: the token axis the offsets index
        return states.transpose(1, 2).reshape(batch * length, states.shape[1], dim)

    offsets = cu_seq_lens_q.to(device=query.device, dtype=torch.int32)
    longest = int(max_length_q) if max_length_q is not None else int((offsets[1:] - offsets[:-1]).max())
    out = (kernel or _causal_varlen)(flat(query), flat(key), flat(value), offsets, longest, scaling,
                                     key.shape[1] != heads)
    return out.view(batch, length, heads, dim), None


def _mask_for_document_attention(*args, attention_mask=None, **kwargs):
    """Packed rows carry their structure in the offsets, so they need no mask; any other caller (a padded
    `generate`) gets sdpa's own."""
    from transformers.masking_utils import sdpa_mask

    return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def use_document_attention(model, varlen: bool = False) -> None:
    """Run `model`'s attention through `sdpa_by_document` (or `sdpa_varlen`). Only in memory: transformers does
    not save the attention implementation in config.json, so a saved model loads as plain sdpa anywhere."""
    import torch
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    name, function = (VARLEN_DOCUMENT_ATTENTION, sdpa_varlen) if varlen else (DOCUMENT_ATTENTION, sdpa_by_document)
    # Data-dependent offsets: under torch_compile the rest of the model is compiled around the function.
    AttentionInterface.register(name, torch.compiler.disable(function))
    AttentionMaskInterface.register(name, _mask_for_document_attention)
    model.config._attn_implementation = name


def attend_documents_alone(model, attn_implementation: str, device, setting: str = "auto") -> bool:
    """Switch `model` to attention by document offsets where `choose_packed_attention` says so; True when it
    did, and the batches must then carry the offsets instead of a 4-D mask."""
    way = choose_packed_attention(setting, attn_implementation, device.type)
    if way not in ("by_document", "varlen"):
        return False
    use_document_attention(model, varlen=way == "varlen")
    return True


@dataclass
class PackedRowsCollator:
    """Packed rows -> input_ids, labels, position_ids and a 4-D block-causal `attention_mask` (or, `by_document`,
    the document offsets `cu_seq_lens_q`).

    `pad_to_multiple_of=max_length` gives every batch the same shape, which `torch.compile` needs to avoid
    recompiling."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    additive_mask: bool = False
    by_document: bool = False  # document offsets for `sdpa_by_document` instead of the 4-D mask

    def __post_init__(self):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self._rows = DataCollatorForLanguageModeling(pad_token_id=self.pad_token_id, padding_free=False,
                                                     return_position_ids=True,
                                                     pad_to_multiple_of=self.pad_to_multiple_of)

    def __call__(self, examples: list[dict]) -> dict:
        batch = self._rows(examples)
        if self.by_document:  # the offsets carry the structure; no mask is built or read
            offsets = document_offsets(batch["position_ids"], batch.pop("attention_mask"))
            batch["cu_seq_lens_q"] = offsets
            batch["max_length_q"] = int((offsets[1:] - offsets[:-1]).max())  # on the host: no GPU sync later
        else:
            batch["attention_mask"] = block_causal_mask(batch["position_ids"], batch["attention_mask"],
                                                        additive=self.additive_mask)
        # The model shifts labels by one: a document's first token would be predicted from the previous
        # document's last token. That prediction crosses a boundary, so it gets no label.
        batch["labels"][batch["position_ids"] == 0] = -100
        return batch


def _count_real_tokens(trainer, inputs):
    """Non-padding input tokens of a packed-rows batch, summed over processes (the 4-D mask counts pairs)."""
    import torch

    local = (inputs["input_ids"] != trainer.processing_class.pad_token_id).sum()
    local = torch.as_tensor(local, device=trainer.args.device, dtype=torch.int64)
    return int(trainer.accelerator.gather(local).sum().item())


def _count_with_packed_rows(trainer) -> None:
    """Make the Trainer's `num_input_tokens_seen` and TRL's `num_tokens` metric count real tokens.

    Both read `attention_mask.sum()` when the batch has an attention mask; with a 4-D mask that is the number of
    allowed (query, key) pairs. The Trainer's own fallback without a mask is the non-padding input ids, which
    is what they counted before the mask was made explicit."""
    track, compute_loss = trainer._track_num_input_tokens, trainer.compute_loss

    def track_num_input_tokens(inputs):
        if trainer.args.include_num_input_tokens_seen == "non_padding" and _is_packed_rows(inputs):
            trainer.state.num_input_tokens_seen += _count_real_tokens(trainer, inputs)
        else:
            track(inputs)

    def compute_loss_counting(model, inputs, *args, **kwargs):
        before = getattr(trainer, "_total_train_tokens", None)
        result = compute_loss(model, inputs, *args, **kwargs)
        if before is not None and model.training and _is_packed_rows(inputs):
            trainer._total_train_tokens = before + _count_real_tokens(trainer, inputs)
            trainer._metrics["train"]["num_tokens"] = [trainer._total_train_tokens]
        return result

    trainer._track_num_input_tokens = track_num_input_tokens
    trainer.compute_loss = compute_loss_counting


def _is_packed_rows(inputs) -> bool:
    mask = inputs.get("attention_mask")
    return "cu_seq_lens_q" in inputs or (mask is not None and mask.dim() == 4)


def use_packed_rows(trainer, attn_implementation: str, packed_attention: str = "auto") -> bool:
    """Swap TRL's flattened padding-free collator for packed rows unless a varlen (flash) kernel is in use.

    TRL refuses a custom collator together with BFD packing, so the swap happens after construction; the
    trainer reads `data_collator` only when it builds its data loaders. Under `torch_compile` every batch is
    padded to `max_length`, so that one compiled graph serves the whole run."""
    if not trainer.args.packing or attn_implementation in VARLEN_ATTENTION:
        return False
    pad_to = trainer.args.pad_to_multiple_of
    if trainer.args.torch_compile and trainer.args.max_length:
        pad_to = trainer.args.max_length
    by_document = attend_documents_alone(trainer.model, attn_implementation, trainer.args.device, packed_attention)
    trainer.data_collator = PackedRowsCollator(pad_token_id=trainer.processing_class.pad_token_id,
                                               pad_to_multiple_of=pad_to, by_document=by_document,
                                               additive_mask=attn_implementation not in BOOLEAN_MASK_ATTENTION)
    _count_with_packed_rows(trainer)
    return True
