"""Constrained decoding for the local backend: an answer that must be JSON is decoded under its JSON schema, so a
label parses whatever the model's size (a 135M judge wrote free-text JSON that parsed for no row).

The schema becomes a regular expression and then an index over the model's own vocabulary (outlines-core, the
Rust core of `outlines`, from PyPI); at every decoding step a logits processor allows only the tokens that keep the
answer a prefix of a valid one, and the end-of-turn token only once the JSON is complete. Each row of a batch has
its own schema or none (the judge asks four missions in one batch). Why not distilabel's `structured_output`: in
1.5.3 it takes one schema per LLM and needs `outlines` < 1.0, whose API it calls.

Strings in the schemas carry a `maxLength` and arrays a `maxItems`, so every valid answer fits in the label's
`max_new_tokens` and a greedy small model cannot talk on inside an open string until it is cut.
"""

from __future__ import annotations

import json
import torch
from transformers import LogitsProcessor


def _gpt2_byte_decoder() -> dict[str, int]:
    """Byte-level BPE spells each byte as one printable character; this maps them back (GPT-2's table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def token_bytes(tokenizer) -> dict[bytes, list[int]]:
    """The bytes each ordinary token stands for (added and special tokens never appear inside JSON)."""
    added = set(tokenizer.added_tokens_decoder)
    byte_level = type(getattr(tokenizer, "backend_tokenizer", None) and tokenizer.backend_tokenizer.decoder).__name__
    decoder = _gpt2_byte_decoder() if byte_level == "ByteLevel" else None
    out: dict[bytes, list[int]] = {}
    for token, token_id in tokenizer.get_vocab().items():
        if token_id in added:
            continue
        if decoder is not None and all(c in decoder for c in token):
            raw = bytes(decoder[c] for c in token)
        elif token.startswith("<0x") and token.endswith(">") and len(token) == 6:  # sentencepiece byte fallback
            raw = bytes([int(token[3:5], 16)])
        else:
            raw = token.replace("\u2581", " ").encode("utf-8")
        out.setdefault(raw, []).append(token_id)
    return out


# outlines-core writes any JSON integer so and ignores `minimum`/`maximum`; the integers in our schemas are counts
ANY_INTEGER, COUNT = "(-)?(0|[1-9][0-9]*)", "(0|[1-9][0-9]{0,3})"


class SchemaIndex:
    """A model's vocabulary and the compiled index of each schema it has met (built once per process)."""

    def __init__(self, tokenizer, end_id: int):
        from outlines_core import Vocabulary

        self.end_id = end_id
        self.vocabulary = Vocabulary(end_id, token_bytes(tokenizer))
        self._indexes: dict[str, object] = {}

    def guide(self, schema: dict):
        from outlines_core import Guide, Index
        from outlines_core.json_schema import build_regex_from_schema

        key = json.dumps(schema)  # as given: the order of its properties is the order they are written in
        if key not in self._indexes:
            regex = build_regex_from_schema(key).replace(ANY_INTEGER, COUNT)
            self._indexes[key] = Index(regex, self.vocabulary)
        return Guide(self._indexes[key])


class SchemaLogits(LogitsProcessor):
    """Masks each row's logits to what its schema allows next; rows without a schema decode freely. Once a row's
    JSON is complete only the stop tokens are allowed, so it ends there. The guide writes the allowed tokens as a
    bitmask (one bit per token id), unpacked here with tensor operations: no Python list of the vocabulary."""

    def __init__(self, guides: list, stop_ids: list[int]):
        self.guides = guides
        self.stop_ids = stop_ids
        self.started = False
        self.done = [False] * len(guides)
        self._words = None

    def _allowed(self, row: int, guide, vocab_size: int) -> torch.Tensor:
        words = self._words[row:row + 1]
        guide.write_mask_into(words.data_ptr(), words.numel(), words.element_size())
        bits = (words.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
        return bits.bool().reshape(-1)[:vocab_size]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, vocab_size = scores.shape
        if self._words is None:
            self._words = torch.zeros((rows, (vocab_size + 31) // 32), dtype=torch.int32)
        if self.started:  # the previous step's choice is now the last column
            for row, guide in enumerate(self.guides):
                if guide is None or self.done[row]:
                    continue
                token = int(input_ids[row, -1])
                if token in self.stop_ids or guide.is_finished() and not guide.accepts_tokens([token]):
                    self.done[row] = True
                else:
                    guide.advance(token, return_tokens=False)
        self.started = True
        allowed = torch.ones_like(scores, dtype=torch.bool)
        stops = [t for t in self.stop_ids if t < vocab_size]
        for row, guide in enumerate(self.guides):
            if guide is None:
                continue
            allowed[row] = False if self.done[row] else self._allowed(row, guide, vocab_size).to(scores.device)
            if self.done[row] or guide.is_finished():
                allowed[row, stops] = True
        return scores.masked_fill(~allowed, float("-inf"))
