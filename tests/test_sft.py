"""`smolalign sft` with the real SFTTrainer on the `tiny` preset: masks, packing, learning, resume, reports."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from smolalign.config import DataSection, load_recipe
from smolalign.data import load_data

from .conftest import DEBUG_DIR, assert_user_error, run_cli, write_jsonl

TURNS = [("Repeat the word sun 2 times.", "sun sun"), ("Sort the words: dog cat", "cat dog")]
ROWS_BY_FORMAT = {
    "messages": {"messages": [m for u, a in TURNS for m in ({"role": "user", "content": u},
                                                              {"role": "assistant", "content": a})]},
    "sharegpt": {"conversations": [m for u, a in TURNS for m in ({"from": "human", "value": u},
                                                                   {"from": "gpt", "value": a})]},
    "alpaca": {"instruction": TURNS[0][0], "input": "", "output": TURNS[0][1]},
    "prompt_completion": {"prompt": TURNS[0][0], "completion": TURNS[0][1]},
}


def sft_trainer(tmp_path, tokenizer, data, **training):
    from trl import SFTConfig, SFTTrainer

    from smolalign.model.build import build_model
    from smolalign.train.templates import prepare_chat_tokenizer

    prepare_chat_tokenizer(tokenizer)
    args = SFTConfig(output_dir=str(tmp_path / "out"), bf16=False, activation_checkpointing=False,
                     assistant_only_loss=True, report_to=[], max_length=128, **training)
    return SFTTrainer(model=build_model("tiny", tokenizer), args=args, train_dataset=data,
                      processing_class=tokenizer)


def assistant_label_ids(tokenizer, fmt):
    turns = TURNS if fmt in ("messages", "sharegpt") else TURNS[:1]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return [t for _, answer in turns for t in tokenizer.encode(answer, add_special_tokens=False) + [im_end]]


@pytest.mark.parametrize("fmt", sorted(ROWS_BY_FORMAT))
def test_label_mask_is_the_assistant_spans_for_every_format(tmp_path, tokenizer_dir, fmt):
    from transformers import AutoTokenizer

    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS_BY_FORMAT[fmt]) + "\n")
    data = load_data(DataSection(dataset=str(path)), "chat").train
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    trainer = sft_trainer(tmp_path, tokenizer, data, packing=False)
    labels = trainer.train_dataset[0]["labels"]
    assert [t for t in labels if t != -100] == assistant_label_ids(tokenizer, fmt)


@pytest.mark.parametrize("template", ["none", "plain-chatml"])
def test_template_without_markers_still_masks_correctly(tmp_path, tokenizer_dir, template):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.chat_template = None if template == "none" else (
        "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a "
        "helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{ '<|im_start|>' + "
        "m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS_BY_FORMAT["messages"]) + "\n")
    data = load_data(DataSection(dataset=str(path)), "chat").train
    trainer = sft_trainer(tmp_path, tokenizer, data, packing=False)
    labels = trainer.train_dataset[0]["labels"]
    assert [t for t in labels if t != -100] == assistant_label_ids(tokenizer, "messages")


def test_template_that_never_trains_the_stop_token_is_refused(tokenizer_dir):
    from transformers import AutoTokenizer

    from smolalign.errors import UsageError
    from smolalign.train.templates import prepare_chat_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.chat_template = (  # markers present, but <|im_end|> left outside them
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}{% if m['role'] == 'assistant' %}"
        "{% generation %}{{ m['content'] }}{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}"
        "{{ '<|im_end|>\\n' }}{% endfor %}")
    with pytest.raises(UsageError, match="never learn to stop"):
        prepare_chat_tokenizer(tokenizer)


@pytest.mark.parametrize(("attn", "layout"), [("sdpa", "flattened"), ("eager", "flattened"), ("sdpa", "rows"),
                                              ("eager", "rows"), ("sdpa", "documents")])
def test_packed_logits_equal_unpacked(tokenizer_dir, attn, layout):
    import torch
    from transformers import AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from smolalign.model.build import build_model
    from smolalign.train.packing import PackedRowsCollator, use_document_attention

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build_model("tiny", tokenizer, seed=3)
    model.config._attn_implementation = attn
    if layout == "documents":  # packed rows, each document attended alone (sdpa on CPU)
        use_document_attention(model)
    model.eval()
    docs = [tokenizer.encode(text, add_special_tokens=False) for text in
            ("Sort the words: dog cat fish bird", "Repeat the word sun 3 times. sun sun sun", "How many words: a b")]
    if layout == "flattened":  # TRL's padding-free batch: the whole batch is one sequence
        collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
        rows = [[{"input_ids": d} for d in docs]]
    else:  # smolalign's packed rows: two BFD bins, the second shorter and padded
        collator = PackedRowsCollator(pad_token_id=tokenizer.pad_token_id, additive_mask=attn != "sdpa",
                                      by_document=layout == "documents")
        rows = [[{"input_ids": docs[0] + docs[1], "seq_lengths": [len(docs[0]), len(docs[1])]},
                 {"input_ids": docs[2], "seq_lengths": [len(docs[2])]}]]
    packed = collator([{"input_ids": sum((d["input_ids"] for d in group), []),
                        "seq_lengths": sum((d.get("seq_lengths", [len(d["input_ids"])]) for d in group), [])}
                       for group in rows] if layout == "flattened" else rows[0])
    # flattened: TRL's layout, boundaries read from position ids; rows: smolalign's explicit block-causal mask;
    # documents: explicit document offsets (TRL's flattened batches carry them too, for flash attention)
    assert ("attention_mask" in packed) == (layout == "rows")
    assert ("cu_seq_lens_q" in packed) == (layout != "rows")
    with torch.no_grad():
        # use_cache=False as in training (the Trainer sets it): with a cache, transformers skips packed masks
        logits = model(**{k: v for k, v in packed.items() if k != "labels"}, use_cache=False).logits
    placements = ([(0, 0), (0, len(docs[0])), (0, len(docs[0]) + len(docs[1]))] if layout == "flattened"
                  else [(0, 0), (0, len(docs[0])), (1, 0)])
    for doc, (row, start) in zip(docs, placements):
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([doc])).logits[0]
        torch.testing.assert_close(logits[row, start:start + len(doc)], alone, atol=1e-5, rtol=1e-5)
    starts = packed["position_ids"] == 0
    assert (packed["labels"][starts] == -100).all(), "no label predicts across a document boundary"


def test_debug_recipe_learns_the_tasks(debug_sft_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smolalign.eval.metrics import exact_match
    from smolalign.model.build import build_model
    from smolalign.train.templates import prepare_chat_tokenizer

    held_out = [json.loads(line)["messages"] for line in (DEBUG_DIR / "data/tasks-sft/test.jsonl").open()]
    tokenizer = AutoTokenizer.from_pretrained(debug_sft_run)
    trained = exact_match(AutoModelForCausalLM.from_pretrained(debug_sft_run), tokenizer, held_out)
    base_tokenizer = AutoTokenizer.from_pretrained(DEBUG_DIR / "tokenizer")
    prepare_chat_tokenizer(base_tokenizer)
    untrained = exact_match(build_model("tiny", base_tokenizer, seed=42), base_tokenizer, held_out)
    print(f"\nheld-out exact match: untrained {untrained:.3f} -> trained {trained:.3f}")
    assert untrained <= 0.02
    assert trained >= 0.30, "a broken mask or template (no <|im_end|> learned) stays near zero"


def test_run_writes_its_report(debug_sft_run):
    from transformers import AutoTokenizer, GenerationConfig

    files = {p.name for p in debug_sft_run.iterdir()}
    assert {"README.md", "training_curves.png", "metrics.jsonl", "smolalign_run.json", "recipe.yaml",
            "model.safetensors", "generation_config.json", "chat_template.jinja"} <= files
    assert any((debug_sft_run / "runs").rglob("events.out.tfevents.*")), "tensorboard logs"
    tokenizer = AutoTokenizer.from_pretrained(debug_sft_run)
    assert tokenizer.eos_token == "<|im_end|>"
    assert GenerationConfig.from_pretrained(debug_sft_run).eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    # trained with per-document attention (packed rows on CPU), saved as a model any transformers install loads
    assert "sdpa_by_document" not in (debug_sft_run / "config.json").read_text()
    info = json.loads((debug_sft_run / "smolalign_run.json").read_text())
    assert info["versions"]["trl"] and info["data_fingerprints"]["train"] and info["seed"] == 42
    assert info["data_report"]["rows"] == 4000 and info["data_report"]["rows_cut_by_max_length"] == 0
    card = (debug_sft_run / "README.md").read_text()
    assert "preset tiny" in card and "tasks-sft" in card and "| loss |" in card
    losses = [r["loss"] for r in map(json.loads, (debug_sft_run / "metrics.jsonl").open()) if "loss" in r]
    assert losses[-1] < losses[0] / 2


# ---------------------------------------------------------------- resume

RESUME_ARGS = ["training.max_steps=30", "training.save_steps=5", "training.logging_steps=1",
               "training.report_to=[]", "training.save_total_limit=null"]


def step_losses(out):
    return {r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").open()) if "loss" in r}


@pytest.mark.slow  # whole commands in subprocesses
def test_sigkill_and_resume_gives_the_same_losses(tmp_path):
    from smolalign.train.checkpoints import COMPLETE_MARKER, checkpoints

    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert run_cli("sft", "debug/sft", f"training.output_dir={reference}", *RESUME_ARGS).returncode == 0

    process = subprocess.Popen([sys.executable, "-m", "smolalign.cli", "sft", "debug/sft",
                                f"training.output_dir={killed}", *RESUME_ARGS],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 1200
    while time.time() < deadline and process.poll() is None:
        if (killed / "metrics.jsonl").is_file() and max(step_losses(killed) or [0]) >= 12:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = [step for step, path in checkpoints(killed) if (path / COMPLETE_MARKER).is_file()]
    assert done and max(done) < 30, "killed mid-run, after at least one checkpoint"

    # a checkpoint killed half-written: newer than every complete one, no marker, a truncated weights file
    newest = killed / f"checkpoint-{max(done)}"
    partial = killed / f"checkpoint-{max(done) + 100}"
    shutil.copytree(newest, partial)
    (partial / COMPLETE_MARKER).unlink()
    (partial / "model.safetensors").write_bytes((partial / "model.safetensors").read_bytes()[:100])

    result = run_cli("sft", "debug/sft", f"training.output_dir={killed}", *RESUME_ARGS, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not partial.exists(), "the half-written checkpoint is skipped and removed"
    expected, resumed = step_losses(reference), step_losses(killed)
    after = [s for s in expected if s > max(done)]
    assert after and all(resumed[s] == pytest.approx(expected[s], rel=1e-5) for s in after), (expected, resumed)


def test_resume_with_changed_data_is_refused(tmp_path):
    out = tmp_path / "run"
    args = [f"training.output_dir={out}", "training.max_steps=5", "training.save_steps=5", "training.report_to=[]"]
    assert run_cli("sft", "debug/sft", *args).returncode == 0
    result = run_cli("sft", "debug/sft", *args, "data.num_samples=1000", "--resume")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "recipe changed" in result.stderr and "data.num_samples" in result.stderr, "the changed key is named"


# ---------------------------------------------------------------- LoRA


def test_lora_merge_equals_base_plus_adapter(tmp_path, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    result = run_cli("sft", "debug/sft", f"model.name_or_path={tiny_model_dir}", "model.preset=null",
                     "model.tokenizer=null", f"training.output_dir={out}", "training.max_steps=15",
                     "training.learning_rate=1e-2", "training.report_to=[]", "training.save_strategy=no",
                     "lora={r: 8, lora_alpha: 16, target_modules: [q_proj, v_proj, up_proj]}", "--merge")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "adapter_config.json").is_file() and (out / "merged" / "model.safetensors").is_file()
    ids = torch.tensor([[1, 5, 9, 30, 2, 44, 7]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        base_logits = base(ids).logits
        adapted = PeftModel.from_pretrained(base, out)(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out / "merged")(ids).logits
    assert not torch.allclose(adapted, base_logits, atol=1e-4), "the adapter learned something"
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- bad input


GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.mark.parametrize("case", ["missing-dataset", "wrong-columns", "empty-conversation", "not-alternating",
                                  "missing-model", "packing-unsafe-attention", "wrapped-packing", "packing-with-cache", "lora-typo",
                                  "too-much-truncated"])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, case):
    out = tmp_path / "out"
    data = tmp_path / "d.jsonl"
    args = {
        "missing-dataset": [f"data.dataset={tmp_path / 'nope.jsonl'}"],
        "wrong-columns": [f"data.dataset={write_jsonl(data, [{'text': 'x'}])}"],
        "empty-conversation": [f"data.dataset={write_jsonl(data, [GOOD, {'messages': []}])}"],
        "not-alternating": [f"data.dataset={write_jsonl(data, [GOOD, {'messages': GOOD['messages'][::-1]}])}"],
        "missing-model": [f"model.name_or_path={tmp_path / 'no-model'}", "model.preset=null"],
        "packing-unsafe-attention": ["model.attn_implementation=paged|sdpa"],
        "wrapped-packing": ["training.packing_strategy=wrapped"],
        "packing-with-cache": ["training.use_cache=true"],
        "lora-typo": ["lora={rr: 8}"],
        "too-much-truncated": ["training.max_length=40", "data.max_truncated_fraction=0.05"],
    }[case]
    result = run_cli("sft", "debug/sft", f"training.output_dir={out}", "data.eval_split=null", *args)
    assert_user_error(result)
    assert not out.exists()


def test_the_command_lines_accumulation_sets_the_recipe_files_global_batch_aside():
    """TRL and handbook users pass an accumulation and expect it to apply: on the command line it beats the recipe
    file's batch.global_rows, and the run says what it set aside."""
    from smolalign.train import sft
    from smolalign.train.resolve import resolve_recipe
    from smolalign.train.speed import Machine

    def resolved(*overrides):
        return resolve_recipe("sft", sft, ["training.bf16=false", *overrides], Machine(gpu=False))

    written = resolved("training.gradient_accumulation_steps=1")
    assert written.recipe.training["gradient_accumulation_steps"] == 1
    assert written.recipe.sections["batch"].global_rows is None  # the run record says the batch it trained
    assert any("batch.global_rows=128 of the recipe file set aside: the command line gives "
               "training.gradient_accumulation_steps=1" in note for note in written.notes), written.notes
    micro = resolved("training.per_device_train_batch_size=3")  # 128 rows cannot be met by 3 a micro-step
    assert micro.recipe.sections["batch"].global_rows is None
    assert micro.recipe.training["per_device_train_batch_size"] == 3
    assert any("per_device_train_batch_size=3, which cannot meet it exactly" in note for note in micro.notes)
    kept = resolved("training.per_device_train_batch_size=2")  # 128 = 2 x 64: the global batch still holds
    assert kept.recipe.training["gradient_accumulation_steps"] == 64 and kept.recipe.sections["batch"].global_rows


def test_dpo_with_no_recipe_takes_the_command_lines_accumulation_and_says_so(tmp_path):
    shown = run_cli("dpo", "training.gradient_accumulation_steps=1", "--print-config", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "gradient_accumulation_steps: 1\n" in shown.stdout and "global_rows: null" in shown.stdout
    assert "#   batch.global_rows=128 of the recipe file set aside" in shown.stdout
    (tmp_path / "a-file").write_text("")  # the run stops at its output directory, after its first lines
    started = run_cli("sft", "sft", "training.gradient_accumulation_steps=1", "training.bf16=false",
                      f"training.output_dir={tmp_path / 'a-file'}", cwd=tmp_path)
    assert started.returncode == 2 and "is a file" in started.stderr, started.stderr[-2000:]
    assert started.stderr.index("note: batch.global_rows=128 of the recipe file set aside") < started.stderr.index(
        "is a file")


def test_output_directory_in_use_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run_cli("sft", "debug/sft", f"training.output_dir={out}")
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_recipe_defaults_are_the_paper_settings():
    from smolalign.train import sft
    from smolalign.train.resolve import resolve_recipe
    from smolalign.train.speed import Machine

    # the paper's 8 GPUs: 4 per device x 4 accumulation x 8 = 128 rows (a CPU's settings: bf16 is a GPU's)
    recipe = resolve_recipe("sft", sft, ["training.bf16=false"], Machine(gpu=False, processes=8)).recipe
    args = recipe.training_args()
    assert recipe.sections["batch"].global_rows == 128
    assert (args.num_train_epochs, args.learning_rate, args.per_device_train_batch_size,
            args.gradient_accumulation_steps, args.max_length, args.seed) == (2, 3e-4, 4, 4, 8192, 42)
    assert args.assistant_only_loss and args.packing and args.lr_scheduler_type.value == "cosine"
    assert args.warmup_steps == 0.1
