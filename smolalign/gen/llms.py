"""distilabel's own LLM classes, with the four things 1.5.3 gets wrong for us fixed in small subclasses.

1. Magpie's prompt: distilabel renders the conversation with `add_generation_prompt=True` and then appends the
   pre-query string, so any prompt with a system message or earlier turns ends `<|im_start|>assistant\\n<|im_start|>
   user\\n` (an empty assistant header) and the model writes nonsense. Here the pre-query follows the rendered turns
   directly (`render_prompt`).
2. `TransformersLLM` calls the transformers pipeline without `batch_size`, i.e. one prompt at a time; here a whole
   distilabel batch is one left-padded `generate` call, and generation stops at the chat template's end-of-turn
   token as well as at EOS (a base tokenizer's EOS is not `<|im_end|>`).
3. `ClientvLLM` asks the server which model to use (the first of `/v1/models`) and hard-codes the API key `EMPTY`;
   here the model is pinned and the key is read from the environment when the step loads, never stored.
4. The steps have their own docstrings, so distilabel's citation lookup (an arXiv request without a timeout) has
   nothing to look up.

Three things distilabel does not offer at all, on every backend here: an input may be a `(messages, schema)` pair, and
its answer is then constrained to that JSON schema (structured.py locally; `response_format` on a server that the
checks found to honour it, in its own dialect); every request to a server names all the sampling it means
(servers.py), so no server default changes it; and every generation reports `truncated` (it stopped at
max_new_tokens, finish reason "length"), which the tasks carry into the rows. Every LLM also reports progress to the
watchdog (watchdog.py).

This module imports distilabel at the top: only the run imports it, never the CLI.
"""

from __future__ import annotations

import os

from distilabel.models.llms import ClientvLLM, OpenAILLM, TransformersLLM, vLLM
from distilabel.models.llms.utils import prepare_output
from pydantic import PrivateAttr, SecretStr

from .prompts import render_prompt
from .watchdog import TokenBeat, beating

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>")


def _api_key(env_name: str) -> SecretStr:
    # A local server takes any key; the openai client refuses none at all.
    return SecretStr(os.environ.get(env_name) or "EMPTY")


def split_input(input) -> tuple:
    """(messages, JSON schema or None) from a task's input."""
    return input if isinstance(input, tuple) else (input, None)


def _answered(completion, texts: list) -> dict:
    usage = getattr(completion, "usage", None)
    output = prepare_output(texts, input_tokens=[getattr(usage, "prompt_tokens", 0)],
                            output_tokens=[getattr(usage, "completion_tokens", 0)])
    return {**output, "truncated": [choice.finish_reason == "length" for choice in completion.choices]}


class ServerSampling:
    """What every request to a server carries besides its input: the spec's temperature and top_p, each neutral
    setting the server takes (servers.NEUTRAL, its own names), and where it samples a seed of its own, drawn from the
    pipeline's name (subset, shard, pass) and the request's number in this step, so a rerun of the same plan asks
    with the same seeds and two requests for the same prompt do not get the same answer. (A mixin: the pydantic fields
    `sampling_names` and `_requests` are declared on each LLM class.)"""

    def request_sampling(self, temperature: float, top_p: float) -> dict:
        import zlib

        from distilabel.constants import PIPELINE_NAME_ENV_NAME

        from ..servers import sampling

        count = self._requests
        self._requests = count + 1
        seed = zlib.crc32(f"{os.environ.get(PIPELINE_NAME_ENV_NAME, '')}:{count}".encode()) & 0x7FFFFFFF
        return sampling(temperature, top_p, self.sampling_names, seed=seed)


class ServerChatLLM(ServerSampling, OpenAILLM):
    """An OpenAI-compatible server's /v1/chat/completions (distilabel's OpenAILLM), key read at load time; a schema
    goes in the server's own `dialect` (servers.py: probed at the start), or not at all when it has none."""

    api_key_env: str = "OPENAI_API_KEY"
    dialect: str | None = None
    sampling_names: list[str] = []
    _requests: int = PrivateAttr(default=0)

    def load(self) -> None:
        self.api_key = _api_key(self.api_key_env)
        super().load()

    async def agenerate(self, input, num_generations: int = 1, max_new_tokens: int = 128,  # type: ignore[override]
                        temperature: float = 1.0, top_p: float = 1.0) -> dict:
        from ..servers import constrained

        messages, schema = split_input(input)
        body = self.request_sampling(temperature, top_p)
        if schema is not None:
            body.update(constrained(self.dialect, schema))
        completion = await beating(self._aclient.chat.completions.create(
            model=self.model, messages=messages, n=num_generations, max_tokens=max_new_tokens, extra_body=body))
        return _answered(completion, [choice.message.content for choice in completion.choices])


class ServerMagpieLLM(ServerSampling, ClientvLLM):
    """Magpie over a server's raw /v1/completions: the chat template is rendered here, on the client."""

    api_key_env: str = "OPENAI_API_KEY"
    sampling_names: list[str] = []
    _requests: int = PrivateAttr(default=0)

    def load(self) -> None:
        from openai import OpenAI
        from transformers import AutoTokenizer

        self.api_key = _api_key(self.api_key_env)
        self._client = OpenAI(base_url=self.base_url, api_key=self.api_key.get_secret_value(),
                              max_retries=self.max_retries, timeout=self.timeout)
        OpenAILLM.load(self)
        self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)

    @property
    def model_name(self) -> str:
        return self.model

    def _prepare_input(self, input) -> str:
        pre_query = self.magpie_pre_query_template if self.use_magpie_template else None
        return render_prompt(self._tokenizer, input, pre_query)

    async def agenerate(self, input, num_generations: int = 1, max_new_tokens: int = 128,  # type: ignore[override]
                        temperature: float = 1.0, top_p: float = 1.0) -> dict:
        completion = await beating(self._aclient.completions.create(
            model=self.model, prompt=self._prepare_input(input), n=num_generations, max_tokens=max_new_tokens,
            extra_body=self.request_sampling(temperature, top_p)))
        return _answered(completion, [choice.text for choice in completion.choices])


class LocalLLM(TransformersLLM):
    """A local model through transformers: one batched, left-padded `generate` per distilabel batch."""

    def load(self) -> None:
        import zlib

        import torch
        from distilabel.constants import PIPELINE_NAME_ENV_NAME
        from transformers import pipeline
        from transformers.utils import logging as hf_logging

        from .structured import SchemaIndex

        hf_logging.disable_progress_bar()  # a bar per worker would scroll the run's own display away
        # sampling seeded by the pipeline's name (subset, shard, pass): a rerun of the same plan on the same machine
        # samples the same, and a retry pass samples afresh
        torch.manual_seed(zlib.crc32(os.environ.get(PIPELINE_NAME_ENV_NAME, "").encode()))
        self._pipeline = pipeline(
            "text-generation", model=self.model, tokenizer=self.tokenizer or self.model, dtype=self.torch_dtype,
            trust_remote_code=self.trust_remote_code, device=self.device, model_kwargs=self.model_kwargs or {},
            return_full_text=False,
        )
        tokenizer = self._pipeline.tokenizer
        tokenizer.padding_side = "left"  # decoder-only batches pad on the left, or padding sits before the answer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        stops = {tokenizer.eos_token_id}
        for token in END_OF_TURN_TOKENS:
            token_id = tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
                stops.add(token_id)
        self._stop_ids = sorted(i for i in stops if i is not None)
        end_of_turn = [i for i in self._stop_ids if i != tokenizer.eos_token_id]
        self._schemas = SchemaIndex(tokenizer, (end_of_turn or self._stop_ids)[0])
        self._logger = __import__("logging").getLogger(f"distilabel.llm.{self.model_name}")

    def prepare_input(self, input) -> str:
        pre_query = self.magpie_pre_query_template if self.use_magpie_template else None
        return render_prompt(self._pipeline.tokenizer, input, pre_query)

    def generate(  # type: ignore[override]
        self,
        inputs: list,
        num_generations: int = 1,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        repetition_penalty: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        do_sample: bool = True,
    ) -> list:
        import torch
        from transformers import LogitsProcessorList

        from .structured import SchemaLogits

        pairs = [split_input(input) for input in inputs]
        tokenizer, model = self._pipeline.tokenizer, self._pipeline.model
        batch = tokenizer([self.prepare_input(messages) for messages, _ in pairs], return_tensors="pt",
                          padding=True, add_special_tokens=False).to(model.device)
        processors = [TokenBeat()]
        if any(schema for _, schema in pairs):  # one guide per output row: num_generations rows per input
            guides = [self._schemas.guide(schema) if schema else None for _, schema in pairs
                      for _ in range(num_generations)]
            processors.append(SchemaLogits(guides, self._stop_ids))
        sampling = dict(temperature=temperature, top_p=top_p, top_k=top_k) if do_sample else {}
        with torch.no_grad():
            out = model.generate(
                **batch, max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty, do_sample=do_sample,
                num_return_sequences=num_generations, eos_token_id=self._stop_ids,
                pad_token_id=tokenizer.pad_token_id, logits_processor=LogitsProcessorList(processors), **sampling,
            )
        new = out[:, batch["input_ids"].shape[1]:].tolist()
        prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
        results = []
        for i in range(len(pairs)):
            texts, lengths, truncated = [], [], []
            for ids in new[i * num_generations:(i + 1) * num_generations]:
                end = next((k for k, t in enumerate(ids) if t in self._stop_ids), None)
                kept = ids if end is None else ids[:end]
                texts.append(tokenizer.decode(kept, skip_special_tokens=True))
                lengths.append(len(kept))
                truncated.append(end is None)  # no end-of-turn within max_new_tokens: finish reason "length"
            output = prepare_output(texts, input_tokens=[prompt_tokens[i]], output_tokens=lengths)
            results.append({**output, "truncated": truncated})
        return results


class LocalvLLM(vLLM):
    """distilabel's in-process vLLM (GPU) with the Magpie prompt fixed the same way; vllm itself loads at `load`."""

    def prepare_input(self, input) -> str:
        if isinstance(input, str):
            return input
        pre_query = self.magpie_pre_query_template if self.use_magpie_template else None
        return render_prompt(self._tokenizer, input, pre_query)
