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

Two Trainer counters read `inputs["attention_mask"].sum()` as "real tokens", which is true only of a 2-D padding
mask. `use_packed_rows` points both at the non-padding input ids instead (see `_count_real_tokens`).
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


@dataclass
class PackedRowsCollator:
    """Packed rows -> input_ids, labels, position_ids and a 4-D block-causal `attention_mask`.

    `pad_to_multiple_of=max_length` gives every batch the same shape, which `torch.compile` needs to avoid
    recompiling."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    additive_mask: bool = False

    def __post_init__(self):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self._rows = DataCollatorForLanguageModeling(pad_token_id=self.pad_token_id, padding_free=False,
                                                     return_position_ids=True,
                                                     pad_to_multiple_of=self.pad_to_multiple_of)

    def __call__(self, examples: list[dict]) -> dict:
        batch = self._rows(examples)
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
        if trainer.args.include_num_input_tokens_seen == "non_padding" and _is_block_mask(inputs):
            trainer.state.num_input_tokens_seen += _count_real_tokens(trainer, inputs)
        else:
            track(inputs)

    def compute_loss_counting(model, inputs, *args, **kwargs):
        before = getattr(trainer, "_total_train_tokens", None)
        result = compute_loss(model, inputs, *args, **kwargs)
        if before is not None and model.training and _is_block_mask(inputs):
            trainer._total_train_tokens = before + _count_real_tokens(trainer, inputs)
            trainer._metrics["train"]["num_tokens"] = [trainer._total_train_tokens]
        return result

    trainer._track_num_input_tokens = track_num_input_tokens
    trainer.compute_loss = compute_loss_counting


def _is_block_mask(inputs) -> bool:
    mask = inputs.get("attention_mask")
    return mask is not None and mask.dim() == 4


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
    trainer.data_collator = PackedRowsCollator(pad_token_id=trainer.processing_class.pad_token_id,
                                               pad_to_multiple_of=pad_to,
                                               additive_mask=attn_implementation not in BOOLEAN_MASK_ATTENTION)
    _count_with_packed_rows(trainer)
    return True
