"""The distilabel steps of the quality passes. Each has a docstring of our own (distilabel fetches the citations a
docstring links to, from arXiv, with no timeout).

- JudgeRows: one LLM, several missions. Every (row, mission) prompt of a batch goes into one `generate` call, so a
  local model decodes them as one batch and a server gets them concurrently; four tasks with four copies of the
  same model would each decode alone.
- RewardScore: what distilabel's RewardModelScore does, batched correctly. In 1.5.3 that step passes no attention
  mask, squeezes the logits only for a batch of exactly two, and feeds `apply_chat_template`'s BatchEncoding (the
  transformers 5 default) to the model as if it were the ids.
- SafetyClassifier: the label a sequence classifier gives the conversation.
- FirstTurnEmbeddings: distilabel's EmbeddingGeneration over the first user turn, with sentence-transformers.

Imports distilabel at the top: only a quality run imports this module. No `from __future__ import annotations`:
distilabel finds a step's input parameter by its `StepInput` annotation object.
"""

from typing import Any, List, Optional

from distilabel.models.embeddings import SentenceTransformerEmbeddings
from distilabel.steps import EmbeddingGeneration, Step, StepInput
from distilabel.steps.tasks import Task
from pydantic import PrivateAttr

from ..watchdog import Watched, beat
from .labels import mission_messages, mission_schema


class JudgeRows(Watched, Task):
    """Asks the judge LLM each row's missions (difficulty, input quality, task category, safety, or a guard's
    verdict); the raw answers go to columns `judge_<mission>`, parsed later (labels.py)."""

    missions: List[str]
    categories: List[str] = []

    @property
    def inputs(self) -> list[str]:
        return ["instruction", "conversation", "todo"]

    @property
    def outputs(self) -> list[str]:
        return [f"judge_{m}" for m in self.missions]

    def format_input(self, input: dict) -> list[dict]:  # one row has several prompts: see process
        raise NotImplementedError

    def format_output(self, output, input=None) -> dict:
        return {}

    def _prompt(self, mission: str, row: dict):
        """(messages, JSON schema): the answer is decoded under the mission's schema (none for a guard)."""
        if mission == "guard":  # the guard's chat template wraps the conversation in its policy
            return [m for m in row["conversation"] if m["role"] != "system"], None
        return mission_messages(mission, row, self.categories), mission_schema(mission, self.categories)

    def process(self, inputs: StepInput):  # type: ignore[override]
        asks = [(i, m) for i, row in enumerate(inputs) for m in self.missions if m in row["todo"]]
        prompts = [self._prompt(m, inputs[i]) for i, m in asks]
        outputs = self.llm.generate_outputs(inputs=prompts, num_generations=1,
                                            **self.llm.get_generation_kwargs()) if prompts else []
        for row in inputs:
            row.update({f"judge_{m}": None for m in self.missions})
        for (i, m), output in zip(asks, outputs):
            generations = output.get("generations") or [None]
            inputs[i][f"judge_{m}"] = generations[0]
        yield inputs


class _Classifier(Watched, Step):
    model: str
    max_length: int = 4096
    dtype: str = "auto"
    device: Optional[str] = None
    trust_remote_code: bool = False

    _model: Any = PrivateAttr(None)
    _tokenizer: Any = PrivateAttr(None)

    def load(self) -> None:
        super().load()
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = "auto" if self.dtype == "auto" else getattr(torch, self.dtype)
        self._tokenizer = AutoTokenizer.from_pretrained(self.model, trust_remote_code=self.trust_remote_code)
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        # the score is read at the last token: cut long conversations at the start, pad at the end
        self._tokenizer.truncation_side, self._tokenizer.padding_side = "left", "right"
        self._model = AutoModelForSequenceClassification.from_pretrained(
            self.model, dtype=dtype, trust_remote_code=self.trust_remote_code).to(device).eval()
        if self._model.config.pad_token_id is None:  # it finds each row's last token by the pad id
            self._model.config.pad_token_id = self._tokenizer.pad_token_id

    def _forward(self, conversations: list[list[dict]]):
        import torch

        beat()

        if getattr(self._tokenizer, "chat_template", None):
            texts = [self._tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
            special = False
        else:  # a plain text classifier: the turns as lines
            texts = ["\n".join(f"{m['role']}: {m['content']}" for m in c) for c in conversations]
            special = True
        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                add_special_tokens=special, return_tensors="pt").to(self._model.device)
        with torch.no_grad():
            return self._model(**batch)


class RewardScore(_Classifier):
    """Scores each whole conversation with a reward model (any AutoModelForSequenceClassification, e.g. ArmoRM)
    into `reward_score`."""

    @property
    def inputs(self) -> list[str]:
        return ["conversation"]

    @property
    def outputs(self) -> list[str]:
        return ["reward_score"]

    def process(self, inputs: StepInput):  # type: ignore[override]
        output = self._forward([row["conversation"] for row in inputs])
        score = getattr(output, "score", None)  # ArmoRM's preference score; plain reward models: logit 0
        scores = (score if score is not None else output.logits[:, 0]).float().reshape(-1).tolist()
        for row, value in zip(inputs, scores):
            row["reward_score"] = float(value)
        yield inputs


class SafetyClassifier(_Classifier):
    """Labels each conversation with a safety classifier: `safety_label` = {label, score} of its top class."""

    @property
    def inputs(self) -> list[str]:
        return ["conversation"]

    @property
    def outputs(self) -> list[str]:
        return ["safety_label"]

    def process(self, inputs: StepInput):  # type: ignore[override]
        logits = self._forward([row["conversation"] for row in inputs]).logits.float()
        multi = self._model.config.problem_type == "multi_label_classification"
        probs = logits.sigmoid() if multi else logits.softmax(-1)
        best = probs.argmax(-1).tolist()
        names = self._model.config.id2label
        for row, index, p in zip(inputs, best, probs.tolist()):
            row["safety_label"] = {"label": str(names.get(index, index)), "score": float(p[index])}
        yield inputs


class FirstTurnEmbeddings(Watched, EmbeddingGeneration):
    """Embeds each row's first user turn with a sentence-embedding model (normalised, so inner product is cosine),
    for the near-duplicate search that MagPie-Ultra ran with faiss."""


class QuietEmbeddings(SentenceTransformerEmbeddings):
    """sentence-transformers without its per-batch progress bar (our display is the one the user reads)."""

    def encode(self, inputs: List[str]) -> List[List[float]]:
        return self._model.encode(sentences=inputs, batch_size=len(inputs), convert_to_numpy=True,
                                  precision=self.precision, normalize_embeddings=self.normalize_embeddings,
                                  show_progress_bar=False).tolist()


def embedding_step(section, **common):
    # sentence-transformers hands model_kwargs to transformers' from_pretrained (whose dtype "auto" is its default)
    dtype = {} if section.dtype == "auto" else {"model_kwargs": {"dtype": section.dtype}}
    embeddings = QuietEmbeddings(model=section.model, device=section.device,
                                 trust_remote_code=section.trust_remote_code, normalize_embeddings=True, **dtype)
    return FirstTurnEmbeddings(name="embedding", embeddings=embeddings, input_mappings={"text": "instruction"},
                               output_mappings={"model_name": "embedding_model"},
                               input_batch_size=section.batch_size, **common)
