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
the per-document loop is bound by kernel launches, so there (and for eager or flex attention) the 4-D mask stays.

Two Trainer counters read `inputs["attention_mask"].sum()` as "real tokens", which is true only of a 2-D padding
mask, and fall back to other counts without one. For packed rows `use_packed_rows` points both at the
non-padding input ids instead (see `_count_real_tokens`).
"""

from __future__ import annotations

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


def _mask_for_document_attention(*args, attention_mask=None, **kwargs):
    """Packed rows carry their structure in the offsets, so they need no mask; any other caller (a padded
    `generate`) gets sdpa's own."""
    from transformers.masking_utils import sdpa_mask

    return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def use_document_attention(model) -> None:
    """Run `model`'s attention through `sdpa_by_document`. Only in memory: transformers does not save the
    attention implementation in config.json, so a saved model loads as plain sdpa anywhere."""
    import torch
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    # A Python loop over data-dependent offsets: under torch_compile the rest of the model is compiled around it.
    AttentionInterface.register(DOCUMENT_ATTENTION, torch.compiler.disable(sdpa_by_document))
    AttentionMaskInterface.register(DOCUMENT_ATTENTION, _mask_for_document_attention)
    model.config._attn_implementation = DOCUMENT_ATTENTION


def attend_documents_alone(model, attn_implementation: str, device) -> bool:
    """Switch `model` to `sdpa_by_document` where it pays, sdpa on CPU (on GPU the per-document loop is bound by
    kernel launches); True when it did, and the batches must then carry document offsets."""
    if attn_implementation != "sdpa" or device.type != "cpu":
        return False
    use_document_attention(model)
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
            batch["cu_seq_lens_q"] = document_offsets(batch["position_ids"], batch.pop("attention_mask"))
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


def use_packed_rows(trainer, attn_implementation: str) -> bool:
    """Swap TRL's flattened padding-free collator for packed rows unless a varlen (flash) kernel is in use.

    TRL refuses a custom collator together with BFD packing, so the swap happens after construction; the
    trainer reads `data_collator` only when it builds its data loaders. Under `torch_compile` every batch is
    padded to `max_length`, so that one compiled graph serves the whole run."""
    if not trainer.args.packing or attn_implementation in VARLEN_ATTENTION:
        return False
    pad_to = trainer.args.pad_to_multiple_of
    if trainer.args.torch_compile and trainer.args.max_length:
        pad_to = trainer.args.max_length
    by_document = attend_documents_alone(trainer.model, attn_implementation, trainer.args.device)
    trainer.data_collator = PackedRowsCollator(pad_token_id=trainer.processing_class.pad_token_id,
                                               pad_to_multiple_of=pad_to, by_document=by_document,
                                               additive_mask=attn_implementation not in BOOLEAN_MASK_ATTENTION)
    _count_with_packed_rows(trainer)
    return True
