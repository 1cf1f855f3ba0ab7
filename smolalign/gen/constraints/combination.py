"""The combination:* checkers, (response, kwargs, prompt) -> bool: two answers, or the request repeated first."""

from __future__ import annotations

import re


def _two_responses(response: str) -> bool:
    """Exactly two non-empty, different answers separated by six asterisks."""
    parts = [p.strip() for p in re.split(r"(?<!\*)\*{6}(?!\*)", response)]
    return len(parts) == 2 and all(parts) and parts[0] != parts[1]


def _repeat_prompt(response: str, kw: dict, prompt: str | None) -> bool:
    """The response starts with the request word for word (case aside) and then answers it."""
    request = (kw.get("prompt_to_repeat") or prompt or "").strip().lower()
    if not request:
        raise ValueError("combination:repeat_prompt needs prompt_to_repeat or the prompt")
    text = response.strip().lower()
    return text.startswith(request) and bool(text[len(request):].strip())


CHECKS = {
    "combination:two_responses": lambda r, kw, p: _two_responses(r),
    "combination:repeat_prompt": _repeat_prompt,
}
