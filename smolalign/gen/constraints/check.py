"""Checking a response against its labels: one strict verdict per instruction, and IFEval's prompt-level pass."""

from __future__ import annotations

from .registry import _CHECKS
from .text import READINGS
from .validation import _clean, validate_instructions


def check_response(response: str, ids: list[str], kwargs: list[dict], prompt: str | None = None,
                   reading: str = "ifeval") -> list[bool]:
    """One verdict per instruction, IFEval's by default; reading="strict" takes the stricter readings the
    checkers describe. A response that is empty or only space follows nothing (as in IFEval). `prompt` is
    accepted and unused: no instruction reads it (repeat_prompt repeats its prompt_to_repeat). Invalid labels
    raise ValueError (validate them first)."""
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {', '.join(READINGS)}, got {reading!r}")
    problem = validate_instructions(ids, kwargs)
    if problem:
        raise ValueError(problem)
    if not response.strip():
        return [False] * len(ids)
    strict = reading == "strict"
    return [bool(_CHECKS[iid](response, _clean(kw), strict)) for iid, kw in zip(ids, kwargs)]


def passes_strict(response: str, ids: list[str], kwargs: list[dict], prompt: str | None = None,
                  reading: str = "ifeval") -> bool:
    """IFEval's prompt-level strict accuracy for one row: every instruction followed."""
    return all(check_response(response, ids, kwargs, prompt, reading))
