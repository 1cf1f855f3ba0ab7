"""What the judge is asked and how its answers become labels: one prompt per mission (difficulty, input quality, task
category, safety), each asking for a small JSON object, and one parser that accepts an answer only when the JSON
parses and every required field holds an allowed value.

An answer is read, never guessed: the JSON object may sit in a code fence or after some words, and a value may
differ from the allowed one in case, spaces, hyphens or underscores ("Very Easy", "data analysis"); anything else
(no JSON, a missing field, a value outside the list) makes the label None, which the counts call "unlabelled".
The prompts are ours, written with the intent of MagPie-Ultra's (distilabel's AssignTags missions and its guard).
A guard model (safety.method=guard) is not prompted: its own chat template holds the policy, and its first line
says "safe" or "unsafe" (the next one names the categories).

Each mission also has a JSON schema (`mission_schema`): a local judge decodes under it and a server that honours
`response_format` gets it, so the answer parses whatever the judge's size; the parser stays the same for servers
that do not. The free-text field comes first (the judge says why, then rates) and is bounded, so a complete answer
always fits the judge's max_new_tokens.
"""

from __future__ import annotations

import json
import re

from .spec import DIFFICULTY, INPUT_QUALITY

JUDGE_MISSIONS = ("difficulty", "input_quality", "task_category", "safety")
JSON_ONLY = "Answer with the JSON object only, nothing before or after it."

PROMPTS = {
    "difficulty": (
        "Read the user's request below and rate how hard it is to answer it well.\n\n"
        "Request:\n\"\"\"\n{instruction}\n\"\"\"\n\n"
        "First say in one sentence what the user wants, then rate the difficulty as one of: "
        "very easy, easy, medium, hard, very hard. " + JSON_ONLY + " Its form:\n"
        '{{"intent": "The user wants ...", "difficulty": "..."}}'),
    "input_quality": (
        "Judge how well the user's request below is written: is it clear, specific and coherent, and does it give "
        "the context needed to answer it?\n"
        "- very poor: unclear or incoherent; essential information is missing\n"
        "- poor: partly unclear or missing important details; it needs much clarification\n"
        "- average: fairly clear; some information would have to be asked for\n"
        "- good: clear and specific, with enough context to answer\n"
        "- excellent: very clear, specific and complete\n\n"
        "Request:\n\"\"\"\n{instruction}\n\"\"\"\n\n"
        "Give a one-line explanation of its strengths and weaknesses, then the rating. " + JSON_ONLY + " Its form:\n"
        '{{"explanation": "...", "input_quality": "very poor, poor, average, good or excellent"}}'),
    "task_category": (
        "Which kind of task does the user's request below ask for? Choose exactly one of: {categories}.\n\n"
        "Request:\n\"\"\"\n{instruction}\n\"\"\"\n\n" + JSON_ONLY + " Its form:\n"
        '{{"task_category": "..."}}'),
    "safety": (
        "Is the conversation below safe? It is unsafe when the user asks for, or the assistant gives, help with "
        "violence, weapons, crime, self-harm, sexual content involving minors, hate or harassment, or the private "
        "data of real people.\n\nConversation:\n\"\"\"\n{conversation}\n\"\"\"\n\n"
        "Give a one-line reason, then the verdict. " + JSON_ONLY + " Its form:\n"
        '{{"reason": "...", "verdict": "safe or unsafe"}}'),
}


WHY_CHARS = 160  # the one-line explanation's bound: ~40 tokens


def _object(**properties) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def mission_schema(mission: str, categories: list[str]) -> dict | None:
    """The JSON schema of a mission's answer (None for a guard, whose template fixes its own answer)."""
    why = {"type": "string", "minLength": 3, "maxLength": WHY_CHARS}
    if mission == "difficulty":
        return _object(intent=why, difficulty={"enum": list(DIFFICULTY)})
    if mission == "input_quality":
        return _object(explanation=why, input_quality={"enum": list(INPUT_QUALITY)})
    if mission == "task_category":
        return _object(task_category={"enum": list(categories)})
    if mission == "safety":
        return _object(reason=why, verdict={"enum": ["safe", "unsafe"]})
    return None


def first_user_turn(messages: list[dict]) -> str:
    return next((m["content"] for m in messages if m["role"] == "user"), "")


def mission_messages(mission: str, row: dict, categories: list[str]) -> list[dict]:
    """The judge's prompt for one row (`instruction`: the first user turn; `conversation`: the messages)."""
    conversation = "\n\n".join(f"{m['role']}: {m['content']}" for m in row["conversation"] if m["role"] != "system")
    text = PROMPTS[mission].format(instruction=row["instruction"], conversation=conversation,
                                   categories=", ".join(categories))
    return [{"role": "user", "content": text}]


def _norm(value) -> str | None:
    if not isinstance(value, str):
        return None
    return re.sub(r"[\s_-]+", " ", value.strip().lower()).strip()


def _choice(value, allowed) -> str | None:
    """The allowed value `value` names, up to case, spaces, hyphens and underscores; else None."""
    wanted = _norm(value)
    return next((a for a in allowed if _norm(a) == wanted), None) if wanted else None


def json_object(text: str | None) -> dict | None:
    """The first JSON object in `text` (after words or inside a code fence), or None."""
    if not isinstance(text, str):
        return None
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _one_line(value) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().splitlines()[0].strip()


def parse_label(mission: str, text: str | None, categories: list[str]) -> dict | None:
    """The columns one answer gives, or None when it does not parse or validate."""
    if mission == "guard":
        return parse_guard(text)
    data = json_object(text)
    if data is None:
        return None
    if mission == "difficulty":
        value = _choice(data.get("difficulty"), DIFFICULTY)
        return {"difficulty": value, "intent": _one_line(data.get("intent"))} if value else None
    if mission == "input_quality":
        value, why = _choice(data.get("input_quality"), INPUT_QUALITY), _one_line(data.get("explanation"))
        return {"input_quality": value, "quality_explanation": why} if value and why else None
    if mission == "task_category":
        value = _choice(data.get("task_category"), categories)
        return {"task_category": value} if value else None
    if mission == "safety":
        value = _choice(data.get("verdict"), ("safe", "unsafe"))
        return {"safety": value, "safety_reason": _one_line(data.get("reason"))} if value else None
    raise ValueError(f"unknown mission {mission!r}")


_GUARD = re.compile(r"^\s*(safe|unsafe)\s*(?:\n\s*([A-Za-z0-9, ]+))?\s*$", re.IGNORECASE)


def parse_guard(text: str | None) -> dict | None:
    """Llama Guard's answer: 'safe', or 'unsafe' and a line of categories (S1,S10)."""
    match = _GUARD.match(text or "")
    if not match:
        return None
    verdict = match.group(1).lower()
    categories = (match.group(2) or "").replace(" ", "") if verdict == "unsafe" else ""
    return {"safety": verdict, "safety_reason": categories or None}
