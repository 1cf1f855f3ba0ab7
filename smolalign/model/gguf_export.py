"""`smolalign model export MODEL --output FILE.gguf`: any model smolalign trains, as the file llama.cpp and Ollama run.

The reverse of `model import` (gguf.py), written with the `gguf` package's own writer, tensor-name map and
quantizer, so no llama.cpp checkout and no compiler are needed. What llama.cpp's `convert_hf_to_gguf.py` does for a
Llama, done here for the models smolalign makes (a preset written by `model init`, SFT, DPO, pretraining output, or
a LoRA adapter, merged into its base first):

- Tensors get llama.cpp's names (`blk.N.attn_q.weight`...). Its rotary embedding pairs dimensions (i, i+1) where
  transformers pairs (i, i + d/2), so q and k rows are permuted as llama.cpp's converter permutes them (and as
  transformers' GGUF loader undoes). A tied output head is left out: llama.cpp then reuses the embeddings.
- Norms stay float32 in every file; 2-D weights take `--dtype` (f32, f16, bf16, or q8_0, blocks of 32 with a
  float16 scale; a row that is not a whole number of blocks stays f16, as llama.cpp's converter does).
- Metadata: the hyperparameters (rope_theta as the model has it, after any context extension), the byte-level BPE
  tokenizer (tokens, token types, merges, bos/eos/unk/pad, whether a bos is added), llama.cpp's name for the
  pre-tokenizer's splits, the chat template (so `<|im_end|>` ends a turn), the model's name and licence.
  The template's `{% generation %}` markers, which only transformers' assistant-token masks read, are removed:
  they render nothing, and other template engines do not know the tag.

The file is written to a hidden sibling and renamed over `--output` at the end: an existing file is replaced only
when the new one is complete; an interrupted export leaves the old file as it was.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import UsageError
from .chat_template import IM_END
from .gguf import MAGIC

DTYPES = ("f32", "f16", "bf16", "q8_0")
_GENERATION_TAG = re.compile(r"\{%-?\s*(end)?generation\s*-?%\}")


def check_output_file(output: str, overwrite: bool) -> Path:
    """Where the file goes: a path ending in .gguf, not a folder, not an existing file unless --overwrite (and
    then only a GGUF file)."""
    from ..outputs import check_writable

    if not str(output).strip():
        raise UsageError("--output is empty: give a file path ending in .gguf, e.g. smollm2-sft.gguf")
    path = Path(output).expanduser()
    if path.is_dir():
        raise UsageError(f"--output '{output}' is a folder: give a file path ending in .gguf, e.g. "
                         f"{path / 'model.gguf'}")
    if path.suffix.lower() != ".gguf":
        raise UsageError(f"--output '{output}' does not end in .gguf: name the file as llama.cpp and Ollama expect, "
                         f"e.g. {path.with_suffix('.gguf')}")
    if path.exists():
        if not overwrite:
            raise UsageError(f"--output '{output}' exists: pass --overwrite to replace it, or choose another file")
        with path.open("rb") as handle:
            if handle.read(4) != MAGIC:
                raise UsageError(f"--overwrite: '{output}' is not a GGUF file, so it is not replaced: choose "
                                 f"another file name")
    check_writable(path.parent, "--output's folder")
    return path


def _config_of(model: str) -> tuple[dict, Path | None]:
    """(config.json as a dict, the adapter folder when MODEL is a LoRA adapter), read before any weights."""
    from .presets import PRESETS

    if model in PRESETS:
        raise UsageError(f"'{model}' is a preset, which has no weights yet: write it with `smolalign model init "
                         f"--preset {model} --tokenizer TOK --output DIR`, then export DIR")
    path = Path(model).expanduser()
    if path.is_dir() and (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
        if not base or base.startswith("preset:") or not (Path(base).expanduser() / "config.json").is_file():
            from ..runinfo import adapter_base_name

            raise UsageError(f"the LoRA adapter in '{model}' was trained on {adapter_base_name(path, base)}, which "
                             f"is not a saved model here: merge it with `--merge` when training from a saved model")
        return json.loads((Path(base).expanduser() / "config.json").read_text()), path
    from .gguf import find_gguf, gguf_config, inspect_gguf, resolve_model
    from .load import check_model_source

    check_model_source(model)
    if (gguf := find_gguf(model)) is not None:  # its metadata: a refusal never waits on a dequantized copy
        return gguf_config(inspect_gguf(gguf)).to_dict(), None
    loadable = Path(resolve_model(model)[0]).expanduser()
    if not (loadable / "config.json").is_file():
        raise UsageError(f"'{model}' is not a local model: export reads a model directory (or a cached hub model)")
    return json.loads((loadable / "config.json").read_text()), None


def check_exportable(config: dict, model: str) -> None:
    kind = config.get("model_type")
    if kind != "llama":
        raise UsageError(f"'{model}' is a {kind or 'model of unknown type'} model: export writes llama.cpp's Llama "
                         f"architecture, the one SmolLM2 and every smolalign preset use; for another family run "
                         f"llama.cpp's convert_hf_to_gguf.py on the saved model folder")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default":
        raise UsageError(f"'{model}' uses rope_type '{rope['rope_type']}', which export does not write: only "
                         f"plain RoPE (SmolLM2's, with any rope_theta)")


# The text llama.cpp's converter encodes to tell pre-tokenizers apart (`get_vocab_base_pre` in its
# convert_hf_to_gguf.py hashes the ids it gets), and the hashes of the tokenizers smolalign models start from.
CHECK_TEXT = ('\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ '
              '🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ '
              '------======= нещо на Български \'\'\'\'\'\'```````""""......!!!!!!?????? I\'ve been \'told he\'s there, '
              '\'RE you sure? \'M not sure I\'ll make it, \'D you like some tea? We\'Ve a\'lL')
KNOWN_HASHES = {"855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM, SmolLM2
                "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2"}  # GPT-2


def pre_tokenizer_name(tokenizer) -> str:
    """llama.cpp's name for how the tokenizer splits text before BPE (`tokenizer.ggml.pre`), which its loader
    (llama-vocab.cpp) maps to the splitting regexes it applies.

    A tokenizer llama.cpp's converter knows by the hash of its ids on CHECK_TEXT gets the converter's name. One that
    `smolalign tokenizer train` made has a vocabulary of its own, so no table holds its hash: it is named by its
    splits, as the loader applies them: ByteLevel's GPT-2 regex alone is "gpt-2"; every digit alone first, then
    GPT-2's regex, is "smollm". Anything else is refused before a byte is written."""
    import hashlib

    ids = tokenizer.encode(CHECK_TEXT, add_special_tokens=False)
    known = KNOWN_HASHES.get(hashlib.sha256(str(ids).encode()).hexdigest())
    if known:
        return known
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model, pre = state.get("model") or {}, state.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    last = steps[-1]
    gpt2_regex = last.get("type") == "ByteLevel" and last.get("use_regex", True) and not last.get("add_prefix_space")
    plain = model.get("type") == "BPE" and gpt2_regex and not state.get("normalizer")
    if plain and kinds == ["ByteLevel"]:
        return "gpt-2"
    if plain and kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    raise UsageError(f"llama.cpp has no name for this tokenizer's splits ({model.get('type')} model, "
                     f"{' + '.join(map(str, kinds)) or 'no pre-tokenizer'}"
                     f"{', a normalizer' if state.get('normalizer') else ''}): export writes byte-level BPE "
                     f"tokenizers (SmolLM2's, or one from `smolalign tokenizer train`); for others run llama.cpp's "
                     f"convert_hf_to_gguf.py on the model folder")


def tokenizer_for_export(model: str, adapter: Path | None):
    """The tokenizer alone (seconds), read before any weights: a LoRA adapter's own, else its base's; a GGUF
    file's from its metadata, as `model import` reads it."""
    from .gguf import find_gguf, resolve_model, split_digits_as_the_file_says
    from .load import load_tokenizer

    if adapter is not None:
        has_own = any(adapter.glob("tokenizer*.json"))
        base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
        return load_tokenizer(str(adapter) if has_own else str(Path(base).expanduser()))
    if (gguf := find_gguf(model)) is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        split_digits_as_the_file_says(tokenizer, gguf)
        return tokenizer
    return load_tokenizer(str(Path(resolve_model(model)[0]).expanduser()))


def weights_for_export(model: str, adapter: Path | None):
    """The model in float32; a LoRA adapter is merged into its base first."""
    import torch
    from transformers import AutoModelForCausalLM

    from .gguf import resolve_model

    if adapter is not None:
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(str(adapter), dtype=torch.float32).merge_and_unload()
    return AutoModelForCausalLM.from_pretrained(str(Path(resolve_model(model)[0]).expanduser()), dtype=torch.float32)


def permute_for_llama_cpp(weights, heads: int):
    """Rows of q (or k, with its kv heads) from transformers' rotary layout to llama.cpp's."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def encode(array, dtype: str):
    """(data, raw dtype for the writer or None) of one tensor in the file's dtype."""
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    if array.ndim == 1 or dtype == "f32":
        return array.astype(np.float32), None
    if dtype == "f16" or (dtype == "q8_0" and array.shape[-1] % 32):
        return array.astype(np.float16), None
    kind = Q.BF16 if dtype == "bf16" else Q.Q8_0
    return quants.quantize(array.astype(np.float32), kind), kind


def add_tensors(writer, model, config, dtype: str) -> int:
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    count = 0
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UsageError(f"the model's tensor {hf_name} has no place in llama.cpp's Llama layout: export "
                             f"writes plain Llama models")
        data = tensor.detach().float().numpy()
        if ".q_proj." in hf_name:
            data = permute_for_llama_cpp(data, heads)
        elif ".k_proj." in hf_name:
            data = permute_for_llama_cpp(data, kv_heads)
        encoded, raw = encode(data, dtype)
        writer.add_tensor(name, encoded, raw_dtype=raw)
        count += 1
    return count


def add_hyperparameters(writer, config, dtype: str) -> None:
    import gguf

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10_000.0))))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(file_types[dtype])
    if dtype in ("bf16", "q8_0"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def add_tokenizer(writer, tokenizer, vocab_size: int, pre: str) -> None:
    """Tokens and their types, then merges, special ids and the template through gguf's own SpecialVocab (which
    reads a saved tokenizer folder as llama.cpp's converter does)."""
    import tempfile

    import gguf

    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in by_id:  # embedding rows past the tokenizer (a padded vocabulary)
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    with tempfile.TemporaryDirectory(prefix="smolalign-export-") as folder:
        tokenizer.save_pretrained(folder)
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    probe = tokenizer("a")["input_ids"]
    special.add_special_token = {"bos": tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id],
                                 "eos": tokenizer.eos_token_id is not None and probe[-1:] == [tokenizer.eos_token_id]}
    template = tokenizer.chat_template
    special.chat_template = _GENERATION_TAG.sub("", template) if isinstance(template, str) else None
    special.add_to_gguf(writer, quiet=True)
    if special.chat_template and IM_END in special.chat_template and IM_END in tokenizer.get_vocab():
        writer.add_eot_token_id(tokenizer.convert_tokens_to_ids(IM_END))  # the end of a ChatML turn


def _card_licence(model: str) -> str | None:
    """The `license:` of a model card's front matter, where the model folder has one."""
    card = Path(model).expanduser() / "README.md"
    if not card.is_file():
        return None
    found = re.search(r"^license:\s*(\S+)\s*$", card.read_text(encoding="utf-8", errors="replace")[:4000], re.M)
    return found.group(1).strip("'\"") if found else None


def remove_stale_partials(path: Path) -> None:
    """Half-written files of exports that were killed (kill -9 leaves no chance to clean up)."""
    for stale in path.parent.glob(f".{path.name}.partial-*"):
        try:
            os.kill(int(stale.name.rsplit("-", 1)[1]), 0)
        except (ValueError, ProcessLookupError):
            stale.unlink(missing_ok=True)
        except PermissionError:
            pass  # another user's process, alive


def export_gguf(model: str, output: str, dtype: str = "f16", overwrite: bool = False, name: str | None = None,
                license: str | None = None) -> dict:
    """`smolalign model export`: every check first, then the file, written beside `output` and renamed onto it."""
    import gguf

    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)} (q8_0: 8-bit, about half of f16)")
    path = check_output_file(output, overwrite)
    config_dict, adapter = _config_of(model)
    check_exportable(config_dict, model)
    tokenizer = tokenizer_for_export(model, adapter)
    pre = pre_tokenizer_name(tokenizer)
    loaded = weights_for_export(model, adapter)
    config = loaded.config
    place = Path(model).expanduser()
    name = name or (place.stem if place.is_file() else place.name) or str(model)
    license = license or _card_licence(model)

    remove_stale_partials(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.touch()
    try:
        writer = gguf.GGUFWriter(str(partial), "llama")
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name)
        if license:
            writer.add_license(license)
        add_hyperparameters(writer, config, dtype)
        add_tokenizer(writer, tokenizer, config.vocab_size, pre)
        tensors = add_tensors(writer, loaded, config, dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return {"output": str(path), "dtype": dtype, "bytes": path.stat().st_size, "tensors": tensors,
            "parameters": sum(p.numel() for p in loaded.parameters()), "name": name, "license": license,
            "pre_tokenizer": pre}
