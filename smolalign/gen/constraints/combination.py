"""The combination:* checkers, (response, kwargs, strict) -> bool: two answers, or the request repeated first."""

from __future__ import annotations


def _two_responses(response: str) -> bool:
    """Split on "******": exactly two non-empty parts, different once stripped; an empty part is allowed only at
    either end (so "A\\n*******\\nB" is two answers, the second starting with "*")."""
    parts = response.split("******")
    if any(not p.strip() for p in parts[1:-1]):
        return False
    answers = [p.strip() for p in parts if p.strip()]
    return len(answers) == 2 and answers[0] != answers[1]


def _repeat_prompt(response: str, kw: dict, strict: bool) -> bool:
    """The response starts with prompt_to_repeat (case and surrounding space aside). The strict reading also
    wants an answer after the repeat; IFEval takes the bare repeat as followed."""
    text, request = response.strip().lower(), kw["prompt_to_repeat"].strip().lower()
    return text.startswith(request) and (not strict or bool(text[len(request):].strip()))


CHECKS = {
    "combination:two_responses": lambda r, kw, s: _two_responses(r),
    "combination:repeat_prompt": _repeat_prompt,
}
