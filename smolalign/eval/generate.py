"""Greedy answers with continuous batching: a row that stops leaves the batch, and the next prompt takes its place.

A small model loops to the token limit on most IFEval prompts while others stop after a sentence. Fixed batches
(`model.generate` on 32 prompts at a time) hold every row until the slowest one stops, so most of the work goes
to rows that have already finished. Here the batch is a set of slots over one key-value cache:

- each step decodes one token for every active row; a row that emits a stop token, or reaches the limit, leaves
  at once (its cache rows are dropped) and is handed to the caller, who records it;
- when a quarter of the slots are free, the next prompts (longest first, so late batches are short and even) are
  prefilled together and their cache joins the running one, each side padded on the left to the same width;
- columns that no remaining row uses any more (the padding of rows that left) are cut off the front.

Padding is masked and every row has its own position ids, so a row's tokens are those `model.generate` gives it
alone (tests/test_eval_generate.py checks them token for token).

transformers ships continuous batching (`model.generate_batch`, `ContinuousBatchingManager`). In this stack
(transformers 5.24, CPU) its greedy answers equal `model.generate`'s, but `bench/eval_throughput.py --tiny
--generate-batch` (6 prompts, 4 new tokens, the tiny preset, 2 shared cores) took 104 s with it against 0.8 s
with `model.generate`: its paged cache and scheduler are built for a GPU. So the loop below, ~90 lines over the
model's own `DynamicCache`, is used instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator


def _left_pad(rows: list[list[int]], pad: int):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def _pad_cache_left(cache, width: int) -> None:
    import torch.nn.functional as F

    for layer in cache.layers:
        extra = width - layer.keys.shape[-2]
        if extra:
            layer.keys = F.pad(layer.keys, (0, 0, extra, 0))
            layer.values = F.pad(layer.values, (0, 0, extra, 0))


def _join(cache, mask, new_cache, new_mask):
    """One cache from two batches: both padded on the left to the wider one, then stacked."""
    import torch
    import torch.nn.functional as F

    width = max(mask.shape[1], new_mask.shape[1])
    _pad_cache_left(cache, width)
    _pad_cache_left(new_cache, width)
    for layer, new in zip(cache.layers, new_cache.layers):
        layer.keys = torch.cat([layer.keys, new.keys])
        layer.values = torch.cat([layer.values, new.values])
    padded = [F.pad(m, (width - m.shape[1], 0)) for m in (mask, new_mask)]
    return cache, torch.cat(padded)


def _keep(cache, mask, rows):
    """Only the given rows, without the leading columns none of them attends to."""
    import torch

    index = torch.tensor(rows, device=mask.device)
    mask = mask[index]
    start = int(mask.any(0).int().argmax())
    for layer in cache.layers:
        layer.keys = layer.keys[index, :, start:]
        layer.values = layer.values[index, :, start:]
    return cache, mask[:, start:]


def _step(model, **inputs):
    """(each row's greedy next token, the cache) after one forward pass. transformers 5.24 names the cache
    `cache`; earlier 5.x releases (the GPU image's 5.17) name it `past_key_values`."""
    import inspect

    if "cache" in inputs and "cache" not in inspect.signature(model.forward).parameters:
        inputs["past_key_values"] = inputs.pop("cache")
    out = model(**inputs, use_cache=True, logits_to_keep=1)  # a prefill's other positions need no logits
    cache = out.get("cache")
    return out.logits[:, -1].argmax(-1), out.get("past_key_values") if cache is None else cache


def greedy_stream(model, prompts: list[list[int]], max_new_tokens: int, stops: set[int], pad: int,
                  slots: int = 32) -> Iterator[tuple[int, list[int], bool]]:
    """(prompt index, new token ids without the stop token, cut at the limit) for each prompt, as each finishes.

    At most `slots` rows decode together; prompts start longest first."""
    import torch

    pending = deque(sorted(range(len(prompts)), key=lambda i: -len(prompts[i])))
    refill_at = max(1, slots // 4)  # a prefill (and a cache copy) per few free slots, not per finished row
    active: list[tuple[int, list[int]]] = []  # (prompt index, tokens so far), in cache row order
    cache = mask = last = None
    device = model.device
    model.eval()
    with torch.no_grad():
        while pending or active:
            if pending and (slots - len(active) >= refill_at or not active):
                joining = [pending.popleft() for _ in range(min(slots - len(active), len(pending)))]
                ids, new_mask = _left_pad([prompts[i] for i in joining], pad)
                ids, new_mask = ids.to(device), new_mask.to(device)
                positions = (new_mask.cumsum(1) - 1).clamp(min=0)
                first, new_cache = _step(model, input_ids=ids, attention_mask=new_mask, position_ids=positions)
                if cache is None:
                    cache, mask = new_cache, new_mask
                else:
                    cache, mask = _join(cache, mask, new_cache, new_mask)
                checked = len(active)  # the rows already running made no step: only the new ones have a token
                active += [(i, []) for i in joining]
                last = first if last is None else torch.cat([last, first])
            else:
                checked = 0
                mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
                positions = mask.sum(1, keepdim=True) - 1
                last, cache = _step(model, input_ids=last[:, None], attention_mask=mask, position_ids=positions,
                                    cache=cache)
            staying = list(range(checked))
            for row, ((index, tokens), token) in enumerate(zip(active, last.tolist())):
                if row < checked:
                    continue
                if token in stops:
                    yield index, tokens, False
                elif len(tokens) + 1 >= max_new_tokens:
                    yield index, tokens + [token], True
                else:
                    tokens.append(token)
                    staying.append(row)
            if len(staying) < len(active):
                active = [active[row] for row in staying]
                if staying:
                    cache, mask = _keep(cache, mask, staying)
                    last = last[torch.tensor(staying, device=last.device)]
                else:
                    cache = mask = last = None
