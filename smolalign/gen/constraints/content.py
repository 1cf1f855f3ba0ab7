"""The detectable_content:* checkers, (response, kwargs, prompt) -> bool: placeholders and a postscript."""

from __future__ import annotations

import re


def _postscript(response: str, kw: dict) -> bool:
    """A line that starts with the marker ("P.S.", "P.P.S"), spaces inside the marker and case ignored."""
    marker = r"\s*".join(re.escape(ch) for ch in kw["postscript_marker"].replace(" ", ""))
    return re.search(r"(?im)^\s*" + marker, response) is not None


CHECKS = {
    "detectable_content:number_placeholders": lambda r, kw, p: len(
        re.findall(r"\[[^\[\]\n]*\w[^\[\]\n]*\](?!\()", r)) >= kw["num_placeholders"],
    "detectable_content:postscript": lambda r, kw, p: _postscript(r, kw),
}
