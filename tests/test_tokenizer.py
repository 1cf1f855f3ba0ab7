"""Tokenizer training: SmolLM2's special tokens at ids 0-2, the ChatML template, generation markers."""

from smolalign.model.chat_template import DEFAULT_SYSTEM_PROMPT

from .conftest import run_cli


def test_special_tokens_and_reload(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert tok.eos_token == tok.bos_token == "<|endoftext|>"
    assert tok.encode("<|im_start|>user", add_special_tokens=False)[0] == 1, "special tokens are never split"
    assert tok.decode(tok.encode("Sort the words: cat dog", add_special_tokens=False)) == "Sort the words: cat dog"


def test_chat_template_renders_smollm2_chatml(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    messages = [{"role": "user", "content": "Sort the words: dog cat"}, {"role": "assistant", "content": "cat dog"}]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == (f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\nSort the words: "
                    "dog cat<|im_end|>\n<|im_start|>assistant\ncat dog<|im_end|>\n")
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert ids[0] == 1 and ids.count(1) == 3 and ids.count(2) == 3


def test_generation_markers_mask_assistant_content_and_im_end(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    messages = [{"role": "user", "content": "Repeat the word sun 2 times."},
                {"role": "assistant", "content": "sun sun"},
                {"role": "user", "content": "Sort the words: dog cat"},
                {"role": "assistant", "content": "cat dog"}]
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    expected = (tok.encode("sun sun", add_special_tokens=False) + [2]
                + tok.encode("cat dog", add_special_tokens=False) + [2])
    assert masked == expected


def test_tokenizer_train_cli(tmp_path, corpus_file):
    out = tmp_path / "tok"
    result = run_cli("tokenizer", "train", "--corpus", corpus_file, "--vocab-size", 300, "--output", out)
    assert result.returncode == 0, result.stderr
    assert (out / "tokenizer.json").is_file() and "300 tokens" in result.stdout


def test_tokenizer_train_bad_input(tmp_path):
    result = run_cli("tokenizer", "train", "--corpus", tmp_path / "missing.txt", "--vocab-size", 300,
                     "--output", tmp_path / "tok")
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "tok").exists()
