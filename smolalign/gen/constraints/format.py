"""The detectable_format:* checkers, (response, kwargs, prompt) -> bool: bullets, fixed answers, highlights,
sections, JSON and a title."""

from __future__ import annotations

import json
import re

CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def _json_body(response: str) -> str:
    body = response.strip()
    fenced = re.fullmatch(r"```(?:json|JSON)?\s*\n(.*?)\n?```", body, flags=re.DOTALL)
    return fenced.group(1) if fenced else body


def _is_json(response: str) -> bool:
    """The whole response is one JSON object or array (a ```json fence around it is allowed)."""
    try:
        return isinstance(json.loads(_json_body(response)), (dict, list))
    except ValueError:
        return False


def _highlights(response: str) -> int:
    """`*text*` or `**text**` spans on one line; a bullet's leading `* ` is not the start of one."""
    text = re.sub(r"(?m)^\s*[*-]\s+", "", response)
    return sum(1 for m in re.finditer(r"\*\*([^\n*]+)\*\*|\*([^\n*]+)\*", text) if (m.group(1) or m.group(2)).strip())


CHECKS = {
    "detectable_format:number_bullet_lists": lambda r, kw, p: len(
        re.findall(r"(?m)^[ \t]*[*-][ \t]+\S", r)) == kw["num_bullets"],
    "detectable_format:constrained_response": lambda r, kw, p: any(o in r for o in CONSTRAINED_OPTIONS),
    "detectable_format:number_highlighted_sections": lambda r, kw, p: _highlights(r) >= kw["num_highlights"],
    "detectable_format:multiple_sections": lambda r, kw, p: len(re.findall(
        r"(?m)^[ \t#*]*" + re.escape(kw["section_spliter"].strip()) + r"[ \t]+\d+", r)) >= kw["num_sections"],
    "detectable_format:json_format": lambda r, kw, p: _is_json(r),
    "detectable_format:title": lambda r, kw, p: re.search(r"<<[^\n<>]*\w[^\n<>]*>>", r) is not None,
}
