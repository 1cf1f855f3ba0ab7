"""`smolalign model export`: GGUF out, read back by `smolalign model import` (transformers' GGUF loader) with the same
tensors (exact in f32, the same rounding in f16/bf16, within Q8_0's error), the same tokenization and template;
a LoRA adapter merged first; the real SmolLM2-135M's greedy answer unchanged; bad input; a replaced file only
once the new one is complete.

The tiny model is `tests/conftest.py`'s `tiny_model_dir` (the tiny preset written by `model init`), which stands
in for the `demo --size tiny` models: same definition, same tokenizer kind, seconds instead of minutes.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from .conftest import run_cli

SAMPLES = ["In 2024 there were 365 days.", "  Spaces\tand\nnew lines ", "<|im_start|>user\nhé 😀<|im_end|>",
           "Sort the words: cat dog"]
CONVERSATION = [{"role": "user", "content": "Sort the words: dog cat"}, {"role": "assistant", "content": "cat dog"},
                {"role": "user", "content": "Again?"}]


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def state(model_dir):
    from transformers import AutoModelForCausalLM

    return {k: v.float() for k, v in AutoModelForCausalLM.from_pretrained(model_dir).state_dict().items()}


def assert_round_trip(original: dict, back: dict, dtype: str) -> float:
    """Every tensor as the dtype allows; returns the worst Q8_0 error in units of its block's max / 127."""
    import torch

    assert original.keys() == back.keys()
    worst = 0.0
    for key, x in original.items():
        y = back[key]
        if x.dim() == 1 or dtype == "f32":
            assert torch.equal(x, y), key  # norms stay float32 in every file
        elif dtype in ("f16", "bf16"):
            assert torch.equal(y, x.to(torch.float16 if dtype == "f16" else torch.bfloat16).float()), key
        else:
            blocks, restored = x.reshape(-1, 32), y.reshape(-1, 32)
            scale = blocks.abs().amax(1, keepdim=True) / 127
            error = float(((blocks - restored).abs() / scale.clamp_min(1e-30)).max())
            assert error <= 0.6, (key, error)  # half a step, plus the float16 rounding of the scale
            worst = max(worst, error)
    return worst


def metadata(path) -> dict:
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    out = {}
    for key in ("general.name", "general.license", "llama.rope.freq_base", "llama.context_length",
                "tokenizer.ggml.pre", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.eot_token_id", "tokenizer.chat_template", "general.file_type"):
        if key in fields:
            out[key] = fields[key].contents()
    out["tensors"] = {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}
    return out


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16", "q8_0"])
def test_export_then_import_gives_the_same_model(tiny_model_dir, tmp_path, dtype):
    from transformers import AutoTokenizer

    from smolalign.model.gguf import import_file
    from smolalign.model.gguf_export import export_gguf

    out = tmp_path / "tiny.gguf"
    result = export_gguf(str(tiny_model_dir), str(out), dtype=dtype, license="apache-2.0")
    assert result["bytes"] == out.stat().st_size and result["pre_tokenizer"] == "gpt-2"
    import_file(str(out), str(tmp_path / "back"))
    assert_round_trip(state(tiny_model_dir), state(tmp_path / "back"), dtype)

    before, after = AutoTokenizer.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tmp_path / "back")
    for text in SAMPLES:
        assert after(text)["input_ids"] == before(text)["input_ids"], text
    rendered = before.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert after.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True) == rendered

    facts = metadata(out)
    assert facts["general.name"] == "tiny" and facts["general.license"] == "apache-2.0"
    assert facts["llama.rope.freq_base"] == 10000.0 and facts["llama.context_length"] == 2048
    assert facts["tokenizer.ggml.add_bos_token"] is False
    assert facts["tokenizer.ggml.eot_token_id"] == before.convert_tokens_to_ids("<|im_end|>")
    assert "generation %}" not in facts["tokenizer.chat_template"], "transformers-only tags are dropped"
    assert "output.weight" not in facts["tensors"], "a tied head is left out: llama.cpp reuses the embeddings"
    expected = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}[dtype]
    assert facts["tensors"]["blk.0.attn_q.weight"] == expected and facts["tensors"]["blk.0.attn_norm.weight"] == "F32"


def test_a_lora_adapter_is_merged_into_its_base_first(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smolalign.model.gguf import import_file
    from smolalign.model.gguf_export import export_gguf

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_alpha=8))
    torch.manual_seed(0)
    for name, parameter in lora.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(std=0.5)  # as after training: an adapter that changes the model
    lora.save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "adapter")
    merged = {k: v.float() for k, v in lora.merge_and_unload().state_dict().items()}

    export_gguf(str(tmp_path / "adapter"), str(tmp_path / "lora.gguf"), dtype="f32")
    import_file(str(tmp_path / "lora.gguf"), str(tmp_path / "back"))
    back = state(tmp_path / "back")
    assert_round_trip(merged, back, "f32")
    assert not torch.equal(back["model.layers.0.self_attn.q_proj.weight"],
                           state(tiny_model_dir)["model.layers.0.self_attn.q_proj.weight"]), "the adapter is in"


def test_bad_input_is_one_line_and_writes_nothing(tiny_model_dir, tmp_path):
    from click.testing import CliRunner
    from tokenizers import normalizers
    from transformers import AutoTokenizer, GPT2Config

    from smolalign.cli import main

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path / "gpt2")
    odd = tmp_path / "odd-tokenizer"  # a tokenizer that normalizes text first: llama.cpp has no name for its splits
    shutil.copytree(tiny_model_dir, odd)
    tokenizer = AutoTokenizer.from_pretrained(odd)
    tokenizer.backend_tokenizer.normalizer = normalizers.NFKC()
    tokenizer.save_pretrained(odd)
    existing = tmp_path / "old.gguf"
    existing.write_bytes(b"GGUF old file")
    notes = tmp_path / "notes.gguf"
    notes.write_text("not a model file")
    cases = [
        ([str(tmp_path / "gpt2"), "--output", str(tmp_path / "a.gguf")], "convert_hf_to_gguf.py on the saved"),
        ([str(odd), "--output", str(tmp_path / "a.gguf")], "llama.cpp has no name for this tokenizer's splits"),
        ([str(tiny_model_dir), "--output", str(existing)], "exists: pass --overwrite"),
        ([str(tiny_model_dir), "--output", str(tmp_path / "a.gguf"), "--dtype", "q4"], "--dtype 'q4' is not one of"),
        ([str(tiny_model_dir), "--output", str(tmp_path)], "is a folder"),
        ([str(tiny_model_dir), "--output", str(tmp_path / "model.bin")], "does not end in .gguf"),
        ([str(tiny_model_dir), "--output", str(notes), "--overwrite"], "is not a GGUF file, so it is not replaced"),
        (["tiny", "--output", str(tmp_path / "a.gguf")], "is a preset, which has no weights"),
        ([str(tmp_path / "missing"), "--output", str(tmp_path / "a.gguf")], "does not exist"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, message in cases:
        result = CliRunner().invoke(main, ["model", "export", *args])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], (args, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == before and existing.read_bytes() == b"GGUF old file"


def test_a_failing_overwrite_keeps_the_old_file(tiny_model_dir, tmp_path, monkeypatch):
    """Injected fault: the writer fails at the tensors (as a full disk would) after every check has passed."""
    import gguf

    from smolalign.model.gguf_export import export_gguf

    out = tmp_path / "model.gguf"
    export_gguf(str(tiny_model_dir), str(out), dtype="f32")
    good = sha256(out)

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full_disk)
    with pytest.raises(OSError):
        export_gguf(str(tiny_model_dir), str(out), dtype="f16", overwrite=True)
    assert sha256(out) == good and sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]
    monkeypatch.undo()
    export_gguf(str(tiny_model_dir), str(out), dtype="f16", overwrite=True)
    assert sha256(out) != good, "a complete export does replace it"


def interrupt(args: list, watch, sig, at_most: float = 120.0) -> subprocess.CompletedProcess:
    """Run a smolalign command, and send `sig` as soon as `watch(process)` is true (e.g. its output is being
    written) or after `at_most` seconds; the command must not have finished by then."""
    # SIGINT back to its default in the child: a test run started in the background inherits it ignored, and
    # Python then never raises KeyboardInterrupt
    process = subprocess.Popen([sys.executable, "-m", "smolalign.cli", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + at_most
    while not watch(process) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, f"finished before the interrupt: {process.communicate()[1][-2000:]}"
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


@pytest.mark.slow
def test_the_real_model_exports_and_answers_the_same(real_model, tiny_model_dir, tmp_path):
    """SmolLM2-135M-Instruct to a Q8_0 file and back: its tensors within Q8_0's error, its tokenizer and its greedy
    answer unchanged (f32's exactness is the tiny model's test); then an interrupted --overwrite (SIGINT, and
    kill -9) leaves the old file byte for byte."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smolalign.model.gguf import import_file
    from smolalign.model.gguf_export import export_gguf

    tokenizer = AutoTokenizer.from_pretrained(real_model)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)

    def answer(model_dir):
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        return model.generate(**prompt, max_new_tokens=24, do_sample=False)[0].tolist()

    target = tmp_path / "real.gguf"
    result = run_cli("model", "export", real_model, "--output", target, "--dtype", "q8_0")
    assert result.returncode == 0 and str(target) in result.stdout, result.stderr[-2000:]
    assert metadata(target)["tokenizer.ggml.pre"] == "smollm"
    import_file(str(target), str(tmp_path / "back"))
    worst = assert_round_trip(state(real_model), state(tmp_path / "back"), "q8_0")
    print(f"q8_0: {target.stat().st_size:,} bytes; worst error {worst:.3f} of its block's step (max/127)")
    assert answer(tmp_path / "back") == answer(real_model)
    for text in SAMPLES:
        assert AutoTokenizer.from_pretrained(tmp_path / "back")(text)["input_ids"] == tokenizer(text)["input_ids"]

    good = sha256(target)
    partials = lambda: list(tmp_path.glob(".real.gguf.partial-*"))  # noqa: E731
    for sig in (signal.SIGINT, signal.SIGKILL):
        result = interrupt(["model", "export", real_model, "--output", target, "--dtype", "q8_0", "--overwrite"],
                           lambda process: bool(partials()), sig)
        assert result.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), result.stderr[-2000:]
        assert sha256(target) == good
        assert bool(partials()) == (sig == signal.SIGKILL), "SIGINT cleans up; only kill -9 leaves the partial file"
    export_gguf(str(tiny_model_dir), str(target), dtype="f32", overwrite=True)  # any model: it is the leftover we check
    assert not partials() and sha256(target) != good, "the next export removes what a killed one left"
