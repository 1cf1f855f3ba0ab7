"""The detectable_content:* checkers, (response, kwargs, strict) -> bool: placeholders and a postscript."""

from __future__ import annotations

import re

# IFEval's two usual markers, read with optional spaces between their letters; any other marker is a pattern
_MARKERS = {"P.P.S": r"p\.\s?p\.\s?s", "P.S.": r"p\.\s?s\."}


def postscript_pattern(marker: str) -> str:
    """The regular expression IFEval searches for (in the lower-cased response) for a postscript marker."""
    marker = marker.strip()
    return _MARKERS.get(marker, marker.lower())


def _postscript(response: str, kw: dict, strict: bool) -> bool:
    """IFEval: the marker anywhere in the response, mid-line too. Strict: a line that starts with the marker
    (case and spaces inside it ignored, taken literally)."""
    if not strict:
        return re.search(postscript_pattern(kw["postscript_marker"]), response.lower()) is not None
    marker = r"\s*".join(re.escape(ch) for ch in kw["postscript_marker"].replace(" ", ""))
    return re.search(r"(?im)^\s*" + marker, response) is not None


def _placeholders(response: str, strict: bool) -> int:
    """IFEval: every `[...]` on one line, `[]` and the text of a markdown link included. Strict: a word inside,
    and not a link's text."""
    pattern = r"\[[^\[\]\n]*\w[^\[\]\n]*\](?!\()" if strict else r"\[.*?\]"
    return len(re.findall(pattern, response))


CHECKS = {
    "detectable_content:number_placeholders": lambda r, kw, s: _placeholders(r, s) >= kw["num_placeholders"],
    "detectable_content:postscript": _postscript,
}
