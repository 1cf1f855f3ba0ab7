"""Base models of any family, with a tokenizer that has no chat template and no ChatML tokens: `sft` gives them
SmolLM2's ChatML template (tokens added, embeddings resized) or the `.jinja` file `training.chat_template_path`
names; `dpo`, `chat` and `model export` read it from the SFT output; `chat` continues a template-less model's text
as plain text; `model info` names the architecture a folder or a GGUF file states. The models are built here from
transformers configs (Qwen2, the second family; Llama for the journey that ends in llama.cpp): nothing downloaded.
"""

from __future__ import annotations

import json

import pytest

from smolalign.model.chat_template import IM_END, IM_START, SMOLLM2_CHAT_TEMPLATE

from .conftest import DEBUG_DIR, assert_user_error, run_cli

SHORT = ["training.max_steps=3", "training.eval_strategy=no", "training.save_strategy=no", "training.max_length=512",
         "training.report_to=[]"]
MARKED_JINJA = (  # a plain "Role: text" format, its assistant turns (and their end of text) marked for the loss
    "{%- for m in messages %}{%- if m['role'] == 'assistant' %}{{ 'Assistant: ' }}{% generation %}"
    "{{ m['content'] + '<|endoftext|>' }}{% endgeneration %}{{ '\\n' }}{%- else %}"
    "{{ m['role'] | capitalize + ': ' + m['content'] + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ 'Assistant: ' }}{%- endif %}")


def plain_tokenizer(folder, corpus_file):
    """A byte-level BPE of ~300 tokens whose only special token is <|endoftext|>, and no chat template: what a
    base model of another family ships."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train([str(corpus_file)], trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                        bos_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    return tokenizer


def base_model(folder, corpus_file, family: str):
    """A tiny randomly initialised base model of `family` ("qwen2" or "llama") with the plain tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = plain_tokenizer(folder, corpus_file)
    config = AutoConfig.for_model(family, vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=1024, tie_word_embeddings=True, rope_theta=50_000.0,
                                  bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory, corpus_file):
    return base_model(tmp_path_factory.mktemp("qwen2") / "base", corpus_file, "qwen2")


def plain_continuation(model_dir, text: str, tokens: int) -> str:
    """The greedy continuation as transformers gives it, without any template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tokenizer(text, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=None)[0, ids["input_ids"].shape[1]:]
    return tokenizer.decode(out, skip_special_tokens=True).strip()


def check_chatml_output(out, base) -> None:
    """The SFT output holds SmolLM2's template, the two tokens as special ones, and embeddings that fit them."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == SMOLLM2_CHAT_TEMPLATE
    added = {token.content: token.special for token in tokenizer.added_tokens_decoder.values()}
    assert added.get(IM_START) is True and added.get(IM_END) is True
    assert AutoConfig.from_pretrained(out).vocab_size == len(tokenizer) == len(AutoTokenizer.from_pretrained(base)) + 2
    eos = json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    assert tokenizer.convert_tokens_to_ids(IM_END) in (eos if isinstance(eos, list) else [eos]), "replies stop there"


@pytest.mark.slow
def test_a_qwen2_base_model_gets_chatml_then_dpo_and_chat_read_it(qwen2, tmp_path):
    from smolalign.train.templates import GIVES_CHATML

    printed = run_cli("sft", "debug/sft", "--model", qwen2, "--print-config")
    assert printed.returncode == 0 and GIVES_CHATML in " ".join(printed.stdout.split()), printed.stdout[-2000:]

    sft = tmp_path / "sft"
    result = run_cli("sft", "debug/sft", "--model", qwen2, f"training.output_dir={sft}", *SHORT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert GIVES_CHATML in " ".join(result.stderr.split()[:200]), "the run's first lines say so"
    check_chatml_output(sft, qwen2)
    from smolalign.runinfo import read_run_info

    assert "gave the model SmolLM2's ChatML template" in read_run_info(sft)["chat_template"]

    dpo = tmp_path / "dpo"
    result = run_cli("dpo", "debug/dpo", "--model", sft, f"training.output_dir={dpo}", *SHORT)
    assert result.returncode == 0, result.stderr[-3000:]
    check_chatml_output(dpo, qwen2)

    chatted = run_cli("chat", dpo, "--prompt", "Sort the words: dog cat", "--temperature", "0",
                      "--max-new-tokens", "4")
    assert chatted.returncode == 0 and "no chat template" not in chatted.stderr, chatted.stderr[-2000:]

    refused = run_cli("model", "export", dpo, "--output", tmp_path / "qwen2.gguf")
    assert_user_error(refused)
    assert "is a qwen2 model" in refused.stderr and "convert_hf_to_gguf.py" in refused.stderr
    assert not (tmp_path / "qwen2.gguf").exists()


@pytest.mark.slow
def test_a_jinja_file_gives_the_template_and_an_unmarkable_one_is_refused(qwen2, tmp_path):
    marked = tmp_path / "role.jinja"
    marked.write_text(MARKED_JINJA)
    out = tmp_path / "sft"
    result = run_cli("sft", "debug/sft", "--model", qwen2, f"training.output_dir={out}",
                     f"training.chat_template_path={marked}", *SHORT)
    assert result.returncode == 0, result.stderr[-3000:]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == MARKED_JINJA and IM_START not in tokenizer.get_vocab()

    unmarked = tmp_path / "unmarked.jinja"
    unmarked.write_text(MARKED_JINJA.replace("{% generation %}", "").replace("{% endgeneration %}", ""))
    refused = run_cli("sft", "debug/sft", "--model", qwen2, f"training.output_dir={tmp_path / 'no'}",
                      f"training.chat_template_path={unmarked}", *SHORT)
    assert_user_error(refused)
    assert "training.assistant_only_loss=false" in refused.stderr
    assert "training.chat_template_path" in refused.stderr
    assert not (tmp_path / "no").exists(), "refused before anything is written"


def test_chat_continues_a_template_less_model_as_plain_text(qwen2, debug_tokenizer_model):
    result = run_cli("chat", qwen2, "--prompt", "The cat", "--temperature", "0", "--max-new-tokens", "6")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "has no chat template: continuing each prompt as plain text" in result.stderr
    assert result.stdout.strip() == plain_continuation(qwen2, "The cat", 6)

    raw = run_cli("chat", debug_tokenizer_model, "--raw", "--prompt", "The cat", "--temperature", "0",
                  "--max-new-tokens", "6")
    assert raw.returncode == 0 and "no chat template" not in raw.stderr, raw.stderr[-2000:]
    assert raw.stdout.strip() == plain_continuation(debug_tokenizer_model, "The cat", 6)


@pytest.fixture(scope="module")
def debug_tokenizer_model(tmp_path_factory):
    """A model whose tokenizer does have a chat template, for `--raw`."""
    from smolalign.model.write import init_model

    out = tmp_path_factory.mktemp("templated") / "tiny"
    init_model("tiny", str(DEBUG_DIR / "tokenizer"), str(out), seed=0)
    return out


def test_model_info_names_the_architecture_and_its_rope(qwen2, tmp_path):
    from transformers import Gemma3TextConfig

    from smolalign.model.info import model_info

    facts = model_info(str(qwen2))
    assert facts["architecture"] == "Qwen2ForCausalLM" and facts["rope_theta"] == 50_000.0

    Gemma3TextConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=16, vocab_size=300).save_pretrained(tmp_path / "gemma3")
    rope = model_info(str(tmp_path / "gemma3"))["rope"]
    assert rope["full_attention"]["rope_theta"] != rope["sliding_attention"]["rope_theta"], "one set per layer type"

    gguf = write_qwen2_gguf(tmp_path / "qwen2.gguf")
    facts = model_info(str(gguf))
    assert facts["architecture"] == "Qwen2ForCausalLM" and facts["gguf_architecture"] == "qwen2"
    assert facts["rope_theta"] == 25_000.0 and facts["layers"] == 1

    result = run_cli("model", "info", gguf)
    assert result.returncode == 0 and "Qwen2ForCausalLM" in result.stdout and "Llama" not in result.stdout


def test_a_gguf_file_is_refused_from_its_metadata_before_it_is_dequantized(tmp_path):
    import os
    from pathlib import Path

    gguf = write_qwen2_gguf(tmp_path / "qwen2-base.gguf")
    refused = run_cli("dpo", "debug/dpo", "--model", gguf, f"training.output_dir={tmp_path / 'dpo'}")
    assert_user_error(refused)
    assert "has no chat template: run `smolalign sft` first" in refused.stderr
    exported = run_cli("model", "export", gguf, "--output", tmp_path / "again.gguf")
    assert_user_error(exported)
    assert "is a qwen2 model" in exported.stderr and "convert_hf_to_gguf.py" in exported.stderr
    imported = list((Path(os.environ["SMOLALIGN_CACHE"]) / "gguf").glob("*qwen2-base*"))
    assert not imported and not (tmp_path / "dpo").exists(), "read from the metadata: nothing dequantized"


def write_qwen2_gguf(path):
    """A one-layer Qwen2 GGUF file written with the gguf package's writer: metadata and f32 tensors."""
    import gguf
    import numpy as np

    hidden, ffn, vocab, heads, kv = 16, 32, 64, 2, 1
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_rope_freq_base(25_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    head = hidden // heads
    shapes = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,),
              "blk.0.attn_norm.weight": (hidden,), "blk.0.ffn_norm.weight": (hidden,),
              "blk.0.attn_q.weight": (hidden, hidden), "blk.0.attn_q.bias": (hidden,),
              "blk.0.attn_k.weight": (kv * head, hidden), "blk.0.attn_k.bias": (kv * head,),
              "blk.0.attn_v.weight": (kv * head, hidden), "blk.0.attn_v.bias": (kv * head,),
              "blk.0.attn_output.weight": (hidden, hidden), "blk.0.ffn_gate.weight": (ffn, hidden),
              "blk.0.ffn_up.weight": (ffn, hidden), "blk.0.ffn_down.weight": (hidden, ffn)}
    for name, shape in shapes.items():
        writer.add_tensor(name, np.full(shape, 0.01, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_model_import_shows_no_progress_wall_off_a_terminal(tiny_model_dir, tmp_path):
    from smolalign.model.gguf_export import export_gguf

    export_gguf(str(tiny_model_dir), str(tmp_path / "tiny.gguf"), dtype="f32")
    result = run_cli("model", "import", tmp_path / "tiny.gguf", "--output", tmp_path / "back", fresh=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "\r" not in result.stderr and "de-quantizing" not in result.stderr, result.stderr[-2000:]


def test_plan_takes_model_as_sft_does(qwen2):
    from smolalign.model.info import model_info
    from smolalign.train.templates import GIVES_CHATML

    result = run_cli("plan", "debug/sft", "--model", qwen2, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    plan = json.loads(result.stdout)
    assert plan["model"]["parameters"] == model_info(str(qwen2))["parameters"]
    assert GIVES_CHATML in plan["notes"], "the template sft will give it"


def test_the_debug_recipe_states_its_parameter_count():
    from transformers import AutoTokenizer

    from smolalign.model.build import count_parameters, llama_config

    tokenizer = AutoTokenizer.from_pretrained(DEBUG_DIR / "tokenizer")
    count = count_parameters(llama_config("tiny", tokenizer=tokenizer))
    assert f"({count:,} parameters" in (DEBUG_DIR / "sft.yaml").read_text().splitlines()[0]
