"""The distilabel steps of ultrafeedback: completions from one model, appended to the row's, and the judge's
ratings with distilabel's UltraFeedback rubric, decoded under a JSON schema (as gen's labels are: structured.py
locally, `response_format` on a server that honours it).

Imports distilabel at the top: only a run imports this module. No `from __future__ import annotations`: distilabel
finds a step's input parameter by its `StepInput` annotation object.
"""

from distilabel.steps import StepInput
from distilabel.steps.tasks import Task, UltraFeedback

from ...watchdog import Watched
from .ratings import parse_ratings, ratings_schema

class CompleteWith(Watched, Task):
    """Writes `count` answers to each row's prompt `messages` with its LLM, appended to the row's `generations`
    (with `generation_models` and `completion_truncated`), so several models' steps chain."""

    count: int = 1

    @property
    def inputs(self) -> list:
        return ["messages"]

    @property
    def outputs(self) -> list:
        return ["generations", "generation_models", "completion_truncated"]

    def format_input(self, input: dict):
        return input["messages"]

    def format_output(self, output, input=None) -> dict:
        return {}

    def process(self, inputs: StepInput):  # type: ignore[override]
        outputs = self.llm.generate_outputs(inputs=[row["messages"] for row in inputs], num_generations=self.count,
                                            **self.llm.get_generation_kwargs())
        for row, output in zip(inputs, outputs):
            texts = list(output.get("generations") or [None] * self.count)
            flags = [bool(f) for f in (output.get("truncated") or [False] * len(texts))]
            row["generations"] = list(row.get("generations") or []) + texts
            row["generation_models"] = list(row.get("generation_models") or []) + [self.llm.model_name] * len(texts)
            row["completion_truncated"] = list(row.get("completion_truncated") or []) + flags
        yield inputs


class RateCompletions(Watched, UltraFeedback):
    """distilabel's UltraFeedback: the judge rates each of the row's `generations` for its `instruction` on the
    chosen aspect's 1-5 rubric, answering as JSON under `ratings_schema`."""

    @property
    def outputs(self) -> list:
        return ["ratings", "rationales", "judge_answer", "model_name"]

    def format_input(self, input: dict):
        messages = super().format_input(input)
        count = len(input["generations"])
        form = ", ".join(f'"text_{i + 1}": {{"rationale": "...", "rating": 1-5}}' for i in range(count))
        messages[-1]["content"] += f"\nAnswer with a JSON object only, nothing before or after it: {{{form}}}"
        return messages, ratings_schema(count)

    def format_output(self, output, input=None) -> dict:
        ratings, rationales = parse_ratings(output, len(input["generations"]))
        return {"ratings": ratings, "rationales": rationales, "judge_answer": output}
