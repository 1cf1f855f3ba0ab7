"""Secrets never reach a file or the screen: tokens, keys and passwords are replaced wherever smolalign writes.

A recipe may carry `training.hub_token=hf_...` (or a generation spec an `llm.api_key`); run records, recipe copies,
model and dataset cards, `--print-config` and error lines all pass through here. Users are pointed to `HF_TOKEN`
and `OPENAI_API_KEY` in the environment instead.
"""

from __future__ import annotations

import re

REDACTED = "***"
# Field names that hold a secret. Exact names: TRL configs also have `pad_token`/`eos_token`, which are not secrets.
SECRET_KEYS = frozenset({"hub_token", "push_to_hub_token", "token", "hf_token", "api_key", "openai_api_key",
                         "password", "secret", "access_token", "auth_token"})
# Strings shaped like a Hugging Face or OpenAI-style key, wherever they appear.
_TOKEN_SHAPES = re.compile(r"\b(hf_[A-Za-z0-9]{8,}|sk-[A-Za-z0-9_-]{8,})")
_KEY_VALUE = re.compile(r"((?:^|[\s.'\"])(?:%s)\s*[=:]\s*)([^\s,'\"}]+)" % "|".join(sorted(SECRET_KEYS, key=len, reverse=True)))


def is_secret_key(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in SECRET_KEYS


def redact(value):
    """A copy of a nested dict/list with secret fields and token-shaped strings replaced."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(str(k)) and v not in (None, "") else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """`hub_token=...`, `api_key: ...` and token-shaped strings in free text (argv, errors, logs)."""
    text = _KEY_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    return _TOKEN_SHAPES.sub(REDACTED, text)
