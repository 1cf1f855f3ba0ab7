"""The distilabel steps the subsets are built from: distilabel's own Magpie and chat generation, given names and
docstrings of our own (distilabel reads each step's docstring for citations and, when it finds only reference
links, fetches them from arXiv with no timeout: an offline run would wait on it). Every step registers its worker
with the watchdog (watchdog.py), and every generated turn carries its `truncated` flag (llms.py) into the row.

Imports distilabel at the top: only a run imports this module. No `from __future__ import annotations`: distilabel
finds a step's input parameter by its `StepInput` annotation object.
"""

from distilabel.steps import LoadDataFromDicts, StepInput
from distilabel.steps.tasks import ChatGeneration, Magpie, TextGeneration

from .watchdog import Watched


class PlannedRows(Watched, LoadDataFromDicts):
    """The rows one shard asks for, as planned before the run: each carries its `gen_id` and its inputs."""


class MagpieTurns(Watched, Magpie):
    """Magpie: the model is given the conversation so far and the opening of a user turn, and writes that turn
    itself; then it answers as the assistant, for `n_turns` exchanges. Each row's `system_prompt` steers the
    topic. Citations: Xu et al., "Magpie: Alignment Data Synthesis from Scratch by Prompting Aligned LLMs with
    Nothing", arXiv:2406.08464."""

    @property
    def outputs(self) -> list:
        return ["conversation", "instruction", "response", "truncated", "model_name"]

    def process(self, inputs: StepInput):  # type: ignore[override]
        """distilabel's turn loop, keeping each turn's `truncated` flag (its own drops the LLM's extra outputs). A
        turn that came back None ends that conversation: the row then has fewer turns and fails."""
        conversations, _ = self._prepare_inputs_for_instruction_generation(inputs)
        flags = [[] for _ in conversations]
        active = list(range(len(conversations)))
        for _ in range(self.n_turns):
            for role in ("user", "assistant"):
                if not active:
                    break
                outputs = self.llm.generate(inputs=[conversations[i] for i in active], num_generations=1,
                                            **self.llm.generation_kwargs)
                still = []
                for i, output in zip(active, outputs):
                    text = (output or {}).get("generations", [None])[0]
                    if text is None:
                        continue
                    conversations[i].append({"role": role, "content": text})
                    flags[i].append(bool((output.get("truncated") or [False])[0]))
                    still.append(i)
                active = still
        rows = []
        for row, conversation, truncated in zip(inputs, conversations, flags):
            turns = [m for m in conversation if m["role"] != "system"]
            first = lambda role: next((m["content"] for m in turns if m["role"] == role), None)  # noqa: E731
            rows.append({**row, "conversation": turns, "instruction": first("user"), "response": first("assistant"),
                         "truncated": truncated, "model_name": self.llm.model_name})
        yield rows


class AnswerMessages(Watched, ChatGeneration):
    """Answers each row's prepared `messages` (a system prompt and the user's text) with one assistant turn."""


class LabelConstraints(Watched, TextGeneration):
    """Asks the model which verifiable (IFEval) constraints the row's `instruction` states, as JSON decoded under
    the labels' schema."""

    def format_input(self, input: dict):
        from .constraints import labelling_prompt
        from .constraints.labels import LABELS_SCHEMA

        return [{"role": "user", "content": labelling_prompt(input["instruction"])}], LABELS_SCHEMA
