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

This module imports distilabel at the top: only the run imports it, never the CLI.
"""

from __future__ import annotations

import os
from typing import List

from distilabel.models.llms import ClientvLLM, OpenAILLM, TransformersLLM, vLLM
from distilabel.models.llms.utils import compute_tokens, prepare_output
from pydantic import SecretStr, validate_call

from .prompts import render_prompt

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>")


def _api_key(env_name: str) -> SecretStr:
    # A local server takes any key; the openai client refuses none at all.
    return SecretStr(os.environ.get(env_name) or "EMPTY")


class ServerChatLLM(OpenAILLM):
    """An OpenAI-compatible server's /v1/chat/completions (distilabel's OpenAILLM), key read at load time."""

    api_key_env: str = "OPENAI_API_KEY"

    def load(self) -> None:
        self.api_key = _api_key(self.api_key_env)
        super().load()


class ServerMagpieLLM(ClientvLLM):
    """Magpie over a server's raw /v1/completions: the chat template is rendered here, on the client."""

    api_key_env: str = "OPENAI_API_KEY"

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


class LocalLLM(TransformersLLM):
    """A local model through transformers: one batched, left-padded `generate` per distilabel batch."""

    def load(self) -> None:
        from transformers import pipeline

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
        self._logger = __import__("logging").getLogger(f"distilabel.llm.{self.model_name}")

    def prepare_input(self, input) -> str:
        pre_query = self.magpie_pre_query_template if self.use_magpie_template else None
        return render_prompt(self._pipeline.tokenizer, input, pre_query)

    @validate_call
    def generate(  # type: ignore[override]
        self,
        inputs: List[list],
        num_generations: int = 1,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        repetition_penalty: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        do_sample: bool = True,
    ) -> list:
        prompts = [self.prepare_input(input) for input in inputs]
        tokenizer = self._pipeline.tokenizer
        sampling = dict(temperature=temperature, top_p=top_p, top_k=top_k) if do_sample else {}
        outputs = self._pipeline(
            prompts, batch_size=len(prompts), max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
            do_sample=do_sample, num_return_sequences=num_generations, eos_token_id=self._stop_ids,
            pad_token_id=tokenizer.pad_token_id, **sampling,
        )
        results = []
        for input, output in zip(inputs, outputs):
            texts = [generation["generated_text"] for generation in output]
            results.append(prepare_output(
                texts, input_tokens=[compute_tokens(input, tokenizer.encode)],
                output_tokens=[compute_tokens(text, tokenizer.encode) for text in texts],
            ))
        return results


class LocalvLLM(vLLM):
    """distilabel's in-process vLLM (GPU) with the Magpie prompt fixed the same way; vllm itself loads at `load`."""

    def prepare_input(self, input) -> str:
        if isinstance(input, str):
            return input
        pre_query = self.magpie_pre_query_template if self.use_magpie_template else None
        return render_prompt(self._tokenizer, input, pre_query)
