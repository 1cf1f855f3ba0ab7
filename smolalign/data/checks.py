"""Row checks that run on a sample before training, so bad data fails in seconds with the row number."""

from __future__ import annotations

from .formats import RowError

KNOWN_ROLES = {"system", "user", "assistant", "tool"}


def check_conversation(messages: list[dict], need_final_assistant: bool = True) -> None:
    """Raise RowError unless: known roles, no empty content, optional system first, then user/assistant turns
    alternating (a tool result counts on the user's side), ending on the assistant when training on it."""
    if not messages:
        raise RowError("empty conversation")
    for i, message in enumerate(messages):
        if message["role"] not in KNOWN_ROLES:
            raise RowError(f"message {i} has unknown role '{message['role']}' (expected system, user, assistant or tool)")
        if not message["content"].strip() and message["role"] != "system":
            raise RowError(f"message {i} ({message['role']}) has empty content")
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    expected = "user"
    for i, message in enumerate(turns, start=len(messages) - len(turns)):
        side = "user" if message["role"] in ("user", "tool") else message["role"]
        if side == "system":
            raise RowError(f"message {i} is a system message after the start; only the first may be one")
        if side != expected:
            raise RowError(f"roles do not alternate: message {i} is '{message['role']}' where '{expected}' was expected")
        expected = "assistant" if side == "user" else "user"
    if need_final_assistant and turns and turns[-1]["role"] != "assistant":
        raise RowError("the conversation does not end with an assistant message")
    if not turns:
        raise RowError("no user or assistant turn")


def check_preference(row: dict) -> None:
    """A normalised preference row: a well-formed prompt (ending on the user) and two assistant answers."""
    check_conversation(row["prompt"], need_final_assistant=False)
    if row["prompt"][-1]["role"] not in ("user", "tool"):
        raise RowError("the prompt must end with a user turn")


def check_data_section(section) -> None:
    """Values of a recipe's `data` section that the loader would misread (today `num_samples=-1` selects no row
    and the data report crashes); called where the data is loaded, before any row is read."""
    from ..errors import UsageError

    if section.num_samples is not None and section.num_samples < 1:
        raise UsageError(f"data.num_samples={section.num_samples} must be at least 1 (or null for all rows): give "
                         f"the number of rows to train on")
