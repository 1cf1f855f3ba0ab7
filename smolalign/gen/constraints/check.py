"""Checking a response against its labels: one strict verdict per instruction, and IFEval's prompt-level pass."""

from __future__ import annotations

from .registry import _CHECKS
from .validation import _clean, validate_instructions


def check_response(response: str, ids: list[str], kwargs: list[dict], prompt: str | None = None) -> list[bool]:
    """One strict verdict per instruction. Invalid labels raise ValueError (validate them first)."""
    problem = validate_instructions(ids, kwargs)
    if problem:
        raise ValueError(problem)
    return [bool(_CHECKS[iid](response, _clean(kw), prompt)) for iid, kw in zip(ids, kwargs)]


def passes_strict(response: str, ids: list[str], kwargs: list[dict], prompt: str | None = None) -> bool:
    """IFEval's prompt-level strict accuracy for one row: every instruction followed."""
    return all(check_response(response, ids, kwargs, prompt))
