"""The one model definition: exact parameter counts, init -> save -> load -> generate, loader errors."""

import json

import pytest

from smolalign.model.presets import EXPECTED_PARAMETERS, PRESETS

from .conftest import run_cli


@pytest.mark.parametrize("preset", sorted(EXPECTED_PARAMETERS))
def test_preset_parameter_counts_match_released_models(preset):
    from smolalign.model.info import model_info

    assert model_info(preset)["parameters"] == EXPECTED_PARAMETERS[preset]


def test_model_info_cli_json():
    result = run_cli("model", "info", "smollm2-135m", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["parameters"] == 134_515_008
    assert (info["layers"], info["hidden_size"], info["kv_heads"]) == (30, 576, 3)


def test_presets_use_their_init_std(tokenizer_dir):
    from transformers import AutoTokenizer

    from smolalign.model.build import build_model

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build_model("tiny", tok, seed=0)
    std = model.model.layers[0].mlp.up_proj.weight.std().item()
    assert std == pytest.approx(PRESETS["tiny"]["initializer_range"], rel=0.1)
    assert model.config.vocab_size == len(tok), "vocab follows the tokenizer"
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "tied embeddings"


def test_init_save_load_generate(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # plain transformers, as any outside tool
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    ids = tok.apply_chat_template([{"role": "user", "content": "Sort the words: cat dog"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5
    assert torch.isfinite(model(**ids).logits).all()


def test_loader_reads_preset_and_directory(tiny_model_dir, tokenizer_dir):
    from smolalign.model.load import load_model

    model, tok, placement = load_model(name_or_path=str(tiny_model_dir))
    assert (placement.device, placement.dtype, placement.attn_implementation) == ("cpu", "float32", "sdpa")
    assert model.config._attn_implementation == "sdpa"
    fresh, _, _ = load_model(preset="tiny", tokenizer=str(tokenizer_dir))
    assert sum(p.numel() for p in fresh.parameters()) == sum(p.numel() for p in model.parameters())


def test_missing_model_path_is_a_one_line_error(tmp_path):
    result = run_cli("model", "info", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_hub_id_offline_is_a_one_line_error():
    result = run_cli("model", "info", "someone/not-cached-model")
    assert result.returncode == 2
    assert "nor in the hub cache" in result.stderr and "HF_HUB_OFFLINE is set" in result.stderr
    assert "Traceback" not in result.stderr


def test_model_init_refuses_non_empty_output(tmp_path, tokenizer_dir):
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = run_cli("model", "init", "--preset", "tiny", "--tokenizer", tokenizer_dir, "--output", out)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_unknown_preset(tmp_path, tokenizer_dir):
    result = run_cli("model", "init", "--preset", "huge", "--tokenizer", tokenizer_dir, "--output", tmp_path / "m")
    assert result.returncode == 2 and "unknown preset" in result.stderr
    assert not (tmp_path / "m").exists()


def test_a_fresh_model_has_no_padding_index_and_trains_the_separators_input_row(tokenizer_dir):
    """The pad token is <|endoftext|>, pretraining's document separator: as a padding index its input row would start
    at zero and get no gradient through the input (SmolLM2 and nanotron pretrain with none)."""
    import torch
    from transformers import AutoTokenizer

    from smolalign.model.build import build_model

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    separator = tok.pad_token_id
    assert tok.convert_ids_to_tokens(separator) == "<|endoftext|>"
    model = build_model("tiny", tok, seed=0)
    embedding = model.get_input_embeddings()
    assert embedding.padding_idx is None and model.config.pad_token_id is None
    assert embedding.weight[separator].abs().sum() > 0  # drawn like every other row
    ids = torch.tensor([[5, 6, separator, 7, 8]])
    model(input_ids=ids, labels=ids).loss.backward()
    assert embedding.weight.grad[separator].abs().sum() > 0


def test_a_loaded_checkpoint_keeps_its_padding_index(tmp_path, tiny_model_dir):
    """SFT and DPO of a saved model load its config as written: a checkpoint that has a pad id keeps it."""
    import shutil

    from transformers import AutoConfig

    from smolalign.model.load import load_model

    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert config.pad_token_id is None  # `smolalign model init` writes none
    padded = tmp_path / "padded"
    shutil.copytree(tiny_model_dir, padded)
    config.pad_token_id = 0
    config.save_pretrained(padded)
    model, _, _ = load_model(name_or_path=str(padded))
    assert model.config.pad_token_id == 0 and model.get_input_embeddings().padding_idx == 0
