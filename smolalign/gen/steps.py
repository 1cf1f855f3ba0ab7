"""The distilabel steps the subsets are built from: distilabel's own Magpie and chat generation, given names and
docstrings of our own (distilabel reads each step's docstring for citations and, when it finds only reference
links, fetches them from arXiv with no timeout: an offline run would wait on it).

Imports distilabel at the top: only a run imports this module.
"""

from __future__ import annotations

from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import ChatGeneration, Magpie, TextGeneration


class PlannedRows(LoadDataFromDicts):
    """The rows one shard asks for, as planned before the run: each carries its `gen_id` and its inputs."""


class MagpieTurns(Magpie):
    """Magpie: the model is given the conversation so far and the opening of a user turn, and writes that turn
    itself; then it answers as the assistant, for `n_turns` exchanges. Each row's `system_prompt` steers the
    topic. Citations: Xu et al., "Magpie: Alignment Data Synthesis from Scratch by Prompting Aligned LLMs with
    Nothing", arXiv:2406.08464."""


class AnswerMessages(ChatGeneration):
    """Answers each row's prepared `messages` (a system prompt and the user's text) with one assistant turn."""


class LabelConstraints(TextGeneration):
    """Asks the model which verifiable (IFEval) constraints the row's `instruction` states, as JSON."""

    def format_input(self, input: dict) -> list[dict]:
        from .constraints import labelling_prompt

        return [{"role": "user", "content": labelling_prompt(input["instruction"])}]
