"""The prompt text a model continues, for every backend: the chat template applied on the client, and Magpie's
pre-query string that opens a user turn for the model to write. Backends and the LLM classes both import it."""

from __future__ import annotations

CHATML_PRE_QUERY = "<|im_start|>user\n"
PRE_QUERY_ALIASES = {"qwen2": CHATML_PRE_QUERY,
                     "llama3": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"}


def render_prompt(tokenizer, messages: list[dict], pre_query: str | None) -> str:
    """The text the model continues. With `pre_query` (Magpie) and the user's turn still to write, the prompt is the
    conversation so far followed by the pre-query string, with no assistant header in between."""
    if pre_query is not None and (not messages or messages[-1]["role"] != "user"):
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False) if messages else ""
        return head + pre_query
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def pre_query(llm) -> str:
    return PRE_QUERY_ALIASES.get(llm.magpie_pre_query_template, llm.magpie_pre_query_template)
