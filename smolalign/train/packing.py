"""How packed SFT batches reach the model.

TRL's BFD packing fills rows of up to `max_length` tokens with whole documents and, by default, flattens the
whole batch into ONE padding-free sequence. Flash attention's varlen kernels handle that in linear memory; sdpa
and eager attention instead build a block-diagonal mask over the flattened length, so attention costs
(batch x max_length)^2. `PackedRowsCollator` keeps each packed row as a row: shape [batch, max_length], per-
document position ids and no attention mask, from which transformers builds a block-diagonal mask per row.
Attention then costs batch x max_length^2, and documents still never see each other.
"""

from __future__ import annotations

from dataclasses import dataclass

VARLEN_ATTENTION = {"flash_attention_2", "flash_attention_3", "flash_attention_4"}


@dataclass
class PackedRowsCollator:
    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __post_init__(self):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self._rows = DataCollatorForLanguageModeling(pad_token_id=self.pad_token_id, padding_free=False,
                                                     return_position_ids=True,
                                                     pad_to_multiple_of=self.pad_to_multiple_of)

    def __call__(self, examples: list[dict]) -> dict:
        batch = self._rows(examples)
        # Without an attention mask, transformers reads document boundaries from the position ids (each reset to 0
        # starts a document; padding, at position 0, is a one-token document of its own with no label).
        del batch["attention_mask"]
        # The model shifts labels by one: a document's first token would be predicted from the previous
        # document's last token. That prediction crosses a boundary, so it gets no label.
        batch["labels"][batch["position_ids"] == 0] = -100
        return batch


def use_packed_rows(trainer, attn_implementation: str) -> bool:
    """Swap TRL's flattened padding-free collator for packed rows unless a varlen (flash) kernel is in use.

    TRL refuses a custom collator together with BFD packing, so the swap happens after construction; the
    trainer reads `data_collator` only when it builds its data loaders."""
    if not trainer.args.packing or attn_implementation in VARLEN_ATTENTION:
        return False
    trainer.data_collator = PackedRowsCollator(pad_token_id=trainer.processing_class.pad_token_id,
                                               pad_to_multiple_of=trainer.args.pad_to_multiple_of)
    return True
