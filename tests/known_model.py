"""A model of the project's own definition whose behaviour is known in advance, for eval and chat tests.

The `tiny` preset with every attention and MLP output zeroed, so the residual stream at a position is the
embedding of the token there, and the output head untied: the model is a bigram table we write ourselves.
Each edge `a -> b` gives token `a` its own axis of the embedding space and points the head row of `b` along it,
so after `a` the model puts logit `scale` on `b` and 0 on every other token (exactly, whatever came before).
"""

from __future__ import annotations

from pathlib import Path

SCALE = 30.0  # logit of the chosen next token; every other token gets 0, so p(next) = 1 / (1 + (V-1) e^-30)


def bigram_model(tokenizer_dir: Path, out: Path, edges: dict[str, str], eos: str = "<|im_end|>",
                 scale: float = SCALE) -> Path:
    """Save a model that, after token `a`, always predicts `edges[a]`; keys and values are vocabulary tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smolalign.model.build import llama_config

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.eos_token = eos
    config = llama_config("tiny", tokenizer=tokenizer)
    config.tie_word_embeddings = False
    model = AutoModelForCausalLM.from_config(config)
    hidden = config.hidden_size
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        vocab = tokenizer.get_vocab()
        for axis, (source, target) in enumerate(edges.items()):
            # RMSNorm (weight 1) maps sqrt(hidden) * e_axis to itself, so the head reads exactly e_axis . row
            model.model.embed_tokens.weight[vocab[source]] = 0.0
            model.model.embed_tokens.weight[vocab[source], axis] = hidden ** 0.5
            model.lm_head.weight[vocab[target], axis] = scale / hidden ** 0.5
    model.config.architectures = ["LlamaForCausalLM"]
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# The debug tokenizer's reply prefix ends on "Ċ" (the newline after `<|im_start|>assistant`): after it, "cat".
ANSWERS_CAT = {"Ċ": "cat", "cat": "<|im_end|>", "<|im_end|>": "dog", "dog": "dog"}
