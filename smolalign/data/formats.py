"""Detect a dataset's format from its columns and normalise rows to one shape per task.

Chat (SFT) rows become `{"messages": [{"role", "content"}, ...]}`; preference (DPO) rows become
`{"prompt": [messages...], "chosen": [assistant message], "rejected": [assistant message]}`, TRL's
conversational preference format, so the chat template is applied the same way in SFT and DPO.
"""

from __future__ import annotations

from ..errors import UsageError

CHAT_FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion")
PREFERENCE_FORMATS = ("preference",)
REQUIRED_COLUMNS = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "preference": ("chosen", "rejected"),
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "tool": "tool", "function": "tool"}


class RowError(ValueError):
    """A problem with one row; the loader adds the dataset name and row number."""


def detect_format(columns: list[str], task: str, name: str) -> str:
    present = set(columns)
    order = PREFERENCE_FORMATS if task == "preference" else CHAT_FORMATS
    for fmt in order:
        if set(REQUIRED_COLUMNS[fmt]) <= present:
            return fmt
    wanted = " or ".join("+".join(REQUIRED_COLUMNS[f]) for f in order)
    if task == "preference" and "chosen" in present:
        raise UsageError(f"dataset '{name}' is missing column 'rejected': preference data needs prompt, chosen and rejected")
    raise UsageError(
        f"dataset '{name}' has columns {sorted(present)}, none of the {task} formats ({wanted}): "
        f"rename the columns or set data.format"
    )


def check_columns(columns: list[str], fmt: str, name: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS[fmt] if c not in columns]
    if missing:
        raise UsageError(
            f"dataset '{name}' is missing column '{missing[0]}' for format {fmt} "
            f"(it needs {', '.join(REQUIRED_COLUMNS[fmt])}): fix the data or set data.format"
        )


def _text(value, what: str) -> str:
    if value is None:
        raise RowError(f"missing {what}")
    if not isinstance(value, str):
        raise RowError(f"{what} is a {type(value).__name__}, expected text")
    return value


def _message(role, content, what: str) -> dict:
    return {"role": _text(role, f"role of {what}"), "content": _text(content, f"content of {what}")}


def _message_list(value, what: str, text_role: str | None = "user") -> list[dict]:
    """A list of {role, content}; plain text counts as one message of `text_role` where a format allows it."""
    if value is None:
        raise RowError(f"missing {what}")
    if isinstance(value, str):
        if text_role is None:
            raise RowError(f"{what} is text, expected a list of {{role, content}} messages, e.g. "
                           f'[{{"role": "user", "content": "..."}}, {{"role": "assistant", "content": "..."}}]')
        return [{"role": text_role, "content": value}]
    if not isinstance(value, list):
        raise RowError(f"{what} is a {type(value).__name__}, expected a list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RowError(f"{what}[{i}] is not a {{role, content}} message")
        out.append(_message(m["role"], m["content"], f"{what}[{i}]"))
    return out


def to_messages(row: dict, fmt: str) -> list[dict]:
    """One chat row in any supported format -> a list of {role, content} messages."""
    if fmt == "messages":
        return _message_list(row.get("messages"), "messages", text_role=None)
    if fmt == "sharegpt":
        turns = row.get("conversations")
        if not isinstance(turns, list):
            raise RowError("conversations is not a list of turns")
        out = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                raise RowError(f"conversations[{i}] is not a {{from, value}} turn")
            source = turn["from"]
            if source not in SHAREGPT_ROLES:
                raise RowError(f"conversations[{i}] has unknown speaker '{source}' (expected human, gpt or system)")
            out.append(_message(SHAREGPT_ROLES[source], turn["value"], f"conversations[{i}]"))
        return out
    if fmt == "alpaca":
        instruction = _text(row.get("instruction"), "instruction")
        extra = row.get("input") or ""
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        system = [{"role": "system", "content": row["system"]}] if row.get("system") else []
        return system + [{"role": "user", "content": user}, _message("assistant", row.get("output"), "output")]
    if fmt == "prompt_completion":
        prompt, completion = row.get("prompt"), row.get("completion")
        if isinstance(completion, str):
            completion = [{"role": "assistant", "content": completion}]
        return _message_list(prompt, "prompt") + _message_list(completion, "completion")
    raise RowError(f"format {fmt} is not a chat format")


def to_preference(row: dict) -> dict:
    """One preference row -> {prompt, chosen, rejected} in conversational form.

    UltraFeedback-binarized rows repeat the prompt turns inside chosen and rejected; the shared turns become the
    prompt and must be identical in both, or the pair compares answers to different questions.
    """
    chosen, rejected, prompt = row.get("chosen"), row.get("rejected"), row.get("prompt")
    if chosen is None:
        raise RowError("missing chosen")
    if rejected is None:
        raise RowError("missing rejected")
    if isinstance(chosen, list) and isinstance(rejected, list) and len(chosen) > 1:
        chosen_msgs, rejected_msgs = _message_list(chosen, "chosen"), _message_list(rejected, "rejected")
        if chosen_msgs[:-1] != rejected_msgs[:-1]:
            raise RowError("chosen and rejected have different prompt turns")
        if prompt is not None and isinstance(prompt, str) and chosen_msgs[:-1]:
            if chosen_msgs[-2]["content"].strip() != prompt.strip():
                raise RowError("the prompt column differs from the prompt turn inside chosen")
        prompt_msgs = chosen_msgs[:-1]
        chosen_msgs, rejected_msgs = chosen_msgs[-1:], rejected_msgs[-1:]
    else:
        prompt_msgs = _message_list(prompt, "prompt")
        chosen_msgs = _completion(chosen, "chosen")
        rejected_msgs = _completion(rejected, "rejected")
    for what, msgs in (("chosen", chosen_msgs), ("rejected", rejected_msgs)):
        if msgs[-1]["role"] != "assistant":
            raise RowError(f"{what} must end with an assistant message")
    return {"prompt": prompt_msgs, "chosen": chosen_msgs, "rejected": rejected_msgs}


def _completion(value, what: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    return _message_list(value, what)
