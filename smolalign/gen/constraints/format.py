"""The detectable_format:* checkers, (response, kwargs, strict) -> bool: bullets, fixed answers, highlights,
sections, JSON and a title."""

from __future__ import annotations

import json
import re

CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def section_pattern(spliter: str) -> str:
    """IFEval's section marker: the (case-sensitive) spliter as a pattern, then a number, anywhere."""
    return r"\s?" + spliter.strip() + r"\s?\d+\s?"


def _sections(response: str, kw: dict, strict: bool) -> int:
    """IFEval: the pieces re.split leaves, less one, so a marker mid-line ("as Section 2 says") counts. Strict:
    markers at the start of a line (after markdown `#`, `*` or spaces), taken literally."""
    if not strict:
        return len(re.split(section_pattern(kw["section_spliter"]), response)) - 1
    start = r"(?m)^[ \t#*]*" + re.escape(kw["section_spliter"].strip()) + r"[ \t]+\d+"
    return len(re.findall(start, response))


def _bullets(response: str, strict: bool) -> int:
    """IFEval: lines starting with `*` (not `**`) or `-`, no space needed after the marker (so `-5 degrees` and
    a `---` rule count). Strict: `*` or `-` followed by a space and text."""
    if strict:
        return len(re.findall(r"(?m)^[ \t]*[*-][ \t]+\S", response))
    return len(re.findall(r"^\s*\*[^*].*$", response, flags=re.MULTILINE)) + len(
        re.findall(r"^\s*-.*$", response, flags=re.MULTILINE))


def _highlights(response: str) -> int:
    """`*text*` spans on one line with something besides spaces inside; a `**text**` span counts once more (its
    empty `**` ends do not count)."""
    single = [m for m in re.findall(r"\*[^\n*]*\*", response) if m.strip("*").strip()]
    double = [m for m in re.findall(r"\*\*[^\n*]*\*\*", response) if m[2:-2].strip()]
    return len(single) + len(double)


def _is_json(response: str) -> bool:
    """The response, stripped of a leading ```json (or ```Json, ```JSON, ```) and a trailing ```, is any JSON
    value (a bare string or number too)."""
    body = response.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        body = body.removeprefix(fence)  # one after another, as IFEval strips them
    try:
        json.loads(body.removesuffix("```").strip())
    except ValueError:
        return False
    return True


def _title(response: str) -> bool:
    """A `<<...>>` on one line with something besides spaces and angle brackets inside."""
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))


CHECKS = {
    "detectable_format:number_bullet_lists": lambda r, kw, s: _bullets(r, s) == kw["num_bullets"],
    "detectable_format:constrained_response": lambda r, kw, s: any(o in r for o in CONSTRAINED_OPTIONS),
    "detectable_format:number_highlighted_sections": lambda r, kw, s: _highlights(r) >= kw["num_highlights"],
    "detectable_format:multiple_sections": lambda r, kw, s: _sections(r, kw, s) >= kw["num_sections"],
    "detectable_format:json_format": lambda r, kw, s: _is_json(r),
    "detectable_format:title": lambda r, kw, s: _title(r),
}
