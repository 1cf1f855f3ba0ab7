"""Exact match of greedy chat completions: the plain, hard-to-fool check that SFT or DPO learned a task."""

from __future__ import annotations


def generate_replies(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 24, batch_size: int = 64):
    """Greedy replies to chat prompts (each a list of messages ending on the user), decoded without specials."""
    import torch

    replies = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in batch]
            inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                        pad_token_id=tokenizer.pad_token_id)
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            replies += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return replies


def exact_match(model, tokenizer, conversations: list[list[dict]], **kwargs) -> float:
    """Share of conversations whose last assistant turn the model reproduces exactly from the turns before it."""
    prompts = [c[:-1] for c in conversations]
    answers = [c[-1]["content"].strip() for c in conversations]
    replies = generate_replies(model, tokenizer, prompts, **kwargs)
    return sum(r == a for r, a in zip(replies, answers)) / len(answers)


def completion_logprob(model, tokenizer, prompt: list[dict], completion: list[dict]) -> float:
    """Sum of log-probabilities of the completion's tokens after the templated prompt."""
    import torch

    prompt_ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True,
                                               return_dict=True)["input_ids"]
    full_ids = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
    ids = torch.tensor([full_ids], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    logprobs = torch.log_softmax(logits[0, :-1], dim=-1)
    targets = ids[0, 1:]
    picked = logprobs.gather(1, targets[:, None])[:, 0]
    return float(picked[len(prompt_ids) - 1:].sum())


def preference_accuracy(model, tokenizer, pairs: list[dict]) -> float:
    """Share of pairs whose chosen answer the model gives a higher log-probability than the rejected one.

    `pairs` are normalised preference rows ({prompt, chosen, rejected} as message lists)."""
    model.eval()
    wins = 0
    for pair in pairs:
        chosen = completion_logprob(model, tokenizer, pair["prompt"], pair["chosen"])
        rejected = completion_logprob(model, tokenizer, pair["prompt"], pair["rejected"])
        wins += chosen > rejected
    return wins / len(pairs)
