"""Held-out figures that show a stage did its job: loss and perplexity, exact match, preference accuracy.

Three plain measures, each hard to fool: the mean loss of a model on tokens it should predict (assistant tokens
of chat data, through the chat template exactly as SFT trains on them, or every token of plain text); exact
match of greedy replies made with the model's chat template and stopped at its stop tokens (a task set's answers
are short and exact, so a broken template or a model that never learned to stop scores zero); and how often a
model gives a pair's chosen answer a higher log-probability than the rejected one (what DPO moves).

Everything is batched: generation pads on the left (the new tokens line up at the end), scoring pads on the
right, and sequences are sorted by length so that a batch holds similar lengths and little padding. A batch is
bounded by a number of padded tokens as well as rows, because the logits of one batch (rows x length x
vocabulary) are the largest tensor here. `run_eval` (the `smolalign eval` command) lives in `run.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..model.chat_template import stop_token_ids

TOKEN_BUDGET = 8192  # padded tokens per scoring batch: 8k x 49k vocabulary x 4 bytes = 1.6 GB of logits
Progress = Callable[[int], None] | None  # told how many rows just finished


def _batches(lengths: list[int], batch_size: int, token_budget: int = TOKEN_BUDGET):
    """Indices grouped longest first; each group has at most `batch_size` rows and `token_budget` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    group: list[int] = []
    for i in order:
        if group and (len(group) == batch_size or lengths[group[0]] * (len(group) + 1) > token_budget):
            yield group
            group = []
        group.append(i)
    if group:
        yield group


def _cut_at_stop(ids: list[int], stops: set[int]) -> list[int]:
    for position, token in enumerate(ids):
        if token in stops:
            return ids[:position]
    return ids


def generate_replies(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 24, batch_size: int = 64,
                     progress: Progress = None) -> list[str]:
    """Greedy replies to chat prompts (each a list of messages ending on the user), decoded without specials."""
    encoded = [chat_prompt_ids(tokenizer, p) for p in prompts]
    replies: list[str] = [""] * len(prompts)
    for group in _batches([len(e) for e in encoded], batch_size, token_budget=1 << 30):
        for i, (reply, _) in zip(group, generate_batch(model, tokenizer, [encoded[i] for i in group],
                                                       max_new_tokens)):
            replies[i] = reply
        if progress:
            progress(len(group))
    return replies


def chat_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """A conversation through the model's chat template, ready for the assistant's reply (its default system
    prompt included when the template adds one)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def generate_batch(model, tokenizer, encoded: list[list[int]], max_new_tokens: int) -> list[tuple[str, bool]]:
    """(reply, cut at the token limit) for each prompt, generated greedily in one batch and stopped at the
    model's stop tokens."""
    import torch

    stops = stop_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    width = max(len(e) for e in encoded)
    # left padding: every prompt ends at the same column, so the new tokens start together
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=model.device)
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=model.device)
    model.eval()
    with torch.no_grad():
        output = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                do_sample=False, temperature=None, top_p=None, top_k=None,
                                eos_token_id=stops, pad_token_id=pad)
    results = []
    for row in range(len(encoded)):
        generated = output[row, width:].tolist()
        new = _cut_at_stop(generated, set(stops))
        cut = len(new) == len(generated) and len(generated) >= max_new_tokens
        results.append((tokenizer.decode(new, skip_special_tokens=True).strip(), cut))
    return results


def exact_match(model, tokenizer, conversations: list[list[dict]], **kwargs) -> float:
    """Share of conversations whose last assistant turn the model reproduces exactly from the turns before it."""
    prompts = [c[:-1] for c in conversations]
    answers = [c[-1]["content"].strip() for c in conversations]
    replies = generate_replies(model, tokenizer, prompts, **kwargs)
    return sum(r == a for r, a in zip(replies, answers)) / len(answers)


def score_tokens(model, sequences: list[tuple[list[int], list[int]]], batch_size: int = 64,
                 pad_id: int = 0, progress: Progress = None) -> list[tuple[float, int]]:
    """(sum of log p(token | tokens before it), number of tokens) over the tokens each mask marks.

    A sequence is (ids, mask); the first token is never scored (nothing predicts it). Sequences longer than the
    model's context are cut to it."""
    import torch

    context = getattr(model.config, "max_position_embeddings", None)
    sequences = [(ids[:context], mask[:context]) for ids, mask in sequences]
    results: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    model.eval()
    for group in _batches([len(ids) for ids, _ in sequences], batch_size):
        width = max(len(sequences[i][0]) for i in group)
        # right padding: real tokens keep positions 0..n-1, and padded positions are masked out of the sums
        ids = torch.tensor([sequences[i][0] + [pad_id] * (width - len(sequences[i][0])) for i in group],
                           device=model.device)
        keep = torch.tensor([[1] * len(sequences[i][0]) + [0] * (width - len(sequences[i][0])) for i in group],
                            device=model.device)
        scored = torch.tensor([sequences[i][1] + [0] * (width - len(sequences[i][1])) for i in group],
                              device=model.device)[:, 1:].bool()
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=keep, use_cache=False).logits[:, :-1].float()
        targets = ids[:, 1:]
        picked = logits.gather(-1, targets[..., None])[..., 0] - torch.logsumexp(logits, dim=-1)
        sums = (picked * scored).sum(dim=1)
        for row, i in enumerate(group):
            results[i] = (float(sums[row]), int(scored[row].sum()))
        if progress:
            progress(len(group))
    return results


_GENERATION_BLOCK = re.compile(r"\{%-?\s*generation\s*-?%\}")


def assistant_tokens(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of a templated conversation and a mask of its assistant tokens: the template's own
    `{% generation %}` marks when it has them (what SFT's assistant-only loss trains on); otherwise what each
    assistant turn adds after the generation prompt."""
    template = tokenizer.chat_template or ""
    if _GENERATION_BLOCK.search(template):
        out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        return list(out["input_ids"]), list(out["assistant_masks"])
    ids = _template_ids(tokenizer, messages)
    mask = [0] * len(ids)
    for turn, message in enumerate(messages):
        if message["role"] == "assistant":
            start = len(_template_ids(tokenizer, messages[:turn], generation_prompt=True))
            end = len(_template_ids(tokenizer, messages[:turn + 1]))
            mask[start:end] = [1] * (end - start)
    return ids, mask


def _template_ids(tokenizer, messages: list[dict], generation_prompt: bool = False) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                              add_generation_prompt=generation_prompt)["input_ids"])


def _completion_tokens(tokenizer, prompt: list[dict], completion: list[dict]) -> tuple[list[int], list[int]]:
    """The templated prompt + completion, with the completion's tokens marked (as DPO scores them)."""
    prompt_ids = _template_ids(tokenizer, prompt, generation_prompt=True)
    full_ids = _template_ids(tokenizer, prompt + completion)
    return full_ids, [0] * len(prompt_ids) + [1] * (len(full_ids) - len(prompt_ids))


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def completion_logprob(model, tokenizer, prompt: list[dict], completion: list[dict]) -> float:
    """Sum of log-probabilities of the completion's tokens after the templated prompt."""
    return score_tokens(model, [_completion_tokens(tokenizer, prompt, completion)], pad_id=_pad_id(tokenizer))[0][0]


def preference_margins(model, tokenizer, pairs: list[dict], batch_size: int = 64,
                       progress: Progress = None) -> list[float]:
    """log p(chosen) - log p(rejected) per pair, all chosen and rejected completions scored in shared batches."""
    sequences = []
    for pair in pairs:
        sequences.append(_completion_tokens(tokenizer, pair["prompt"], pair["chosen"]))
        sequences.append(_completion_tokens(tokenizer, pair["prompt"], pair["rejected"]))
    per_pair = (lambda n: progress(n / 2)) if progress else None
    scores = score_tokens(model, sequences, batch_size=batch_size, pad_id=_pad_id(tokenizer), progress=per_pair)
    return [scores[2 * k][0] - scores[2 * k + 1][0] for k in range(len(pairs))]


def preference_accuracy(model, tokenizer, pairs: list[dict], **kwargs) -> float:
    """Share of pairs whose chosen answer the model gives a higher log-probability than the rejected one.

    `pairs` are normalised preference rows ({prompt, chosen, rejected} as message lists)."""
    margins = preference_margins(model, tokenizer, pairs, **kwargs)
    return sum(m > 0 for m in margins) / len(pairs)


def heldout_loss(model, tokenizer, sequences: list[tuple[list[int], list[int]]], batch_size: int = 64,
                 progress: Progress = None) -> dict:
    """Mean loss per scored token (as training logs it) and its perplexity, over (ids, mask) sequences."""
    import math

    scores = score_tokens(model, sequences, batch_size=batch_size, pad_id=_pad_id(tokenizer), progress=progress)
    total = sum(s for s, _ in scores)
    tokens = sum(n for _, n in scores)
    loss = -total / max(tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": tokens}


def chat_loss(model, tokenizer, conversations: list[list[dict]], **kwargs) -> dict:
    """Loss on the assistant tokens of chat conversations, through the chat template."""
    return heldout_loss(model, tokenizer, [assistant_tokens(tokenizer, c) for c in conversations], **kwargs)


def text_loss(model, tokenizer, texts: list[str], **kwargs) -> dict:
    """Loss on every token of plain texts (no template, no special tokens added)."""
    sequences = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        sequences.append((ids, [1] * len(ids)))
    return heldout_loss(model, tokenizer, sequences, **kwargs)
