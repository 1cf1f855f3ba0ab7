"""`smolalign pretrain` on the shipped debug recipe (the `tiny` preset, two sources, three stages): stage switches,
token shares, one WSD schedule, context extension, exact SIGKILL resume, the chain into `sft`, and bad input."""

import json
import math
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from smolalign.errors import UsageError

from .conftest import DEBUG_DIR, REPO, assert_user_error, run_cli, write_jsonl

STAGE_STEPS = [40, 20, 4]          # recipes/debug/pretrain.yaml: 20480 / 512, 10240 / 512, 8192 / 2048
STAGE_BLOCKS = [64, 64, 256]
STAGE_MIX = [{"prose": 0.7, "arith": 0.3}, {"prose": 0.4, "arith": 0.6}, {"prose": 0.5, "arith": 0.5}]
PEAK_LR, WARMUP, TOTAL = 3e-3, 5, 64


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def losses(run) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in metrics(run) if "loss" in r}


@pytest.fixture(scope="session")
def debug_pretrain_run(tmp_path_factory):
    """The shipped debug pretraining recipe, run once for the whole session through the real CLI."""
    out = tmp_path_factory.mktemp("runs") / "debug-pretrain"
    result = run_cli("pretrain", "debug/pretrain", f"training.output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def debug_recipe(*overrides):
    from smolalign.config import load_recipe
    from smolalign.train.pretrain import command

    from smolalign.train.resolve import recipe_defaults
    from smolalign.train.speed import machine_facts

    return load_recipe("debug/pretrain", "pretrain", list(overrides), recipe_defaults(command, machine_facts()),
                       schema=command.SCHEMA)


def pretrain_trainer(recipe):
    """The trainer `run_pretrain` builds for `recipe`, in this process, with the same steps (nothing trained)."""
    from smolalign.model.load import load_model
    from smolalign.train.pretrain import command

    args = recipe.training_args()
    model, tokenizer, placement = load_model(preset=recipe.model.preset, tokenizer=recipe.model.tokenizer,
                                             seed=args.seed)
    plan = command.plan_for(recipe, args)
    index, _ = command.block_index(recipe, plan, tokenizer)
    return command.make_trainer(model, tokenizer, args, index, plan, recipe.training,
                                recipe.data.cross_document_attention, placement.attn_implementation)


@pytest.fixture(scope="module")
def debug_trainer(tmp_path_factory):
    """The trainer `smolalign pretrain debug/pretrain` builds, in this process (nothing trained)."""
    out = tmp_path_factory.mktemp("trainer") / "out"
    return pretrain_trainer(debug_recipe(f"training.output_dir={out}", "training.report_to=[]"))


def source_of(block, tokenizer) -> str:
    """Prose has letters and no digits, arithmetic digits and no letters: a block tells where it came from."""
    text = tokenizer.decode(block, skip_special_tokens=True)
    letters, digits = any(c.isalpha() for c in text), any(c.isdigit() for c in text)
    assert letters != digits, text
    return "prose" if letters else "arith"


# ---------------------------------------------------------------- data: stages, shares, the index


def test_stages_switch_at_their_token_budgets_with_their_shares(debug_trainer, debug_pretrain_run):
    """Counted from the batches the Trainer's own data loader yields, not from the index's bookkeeping."""
    tokenizer = debug_trainer.processing_class
    counted = [{"prose": 0, "arith": 0} for _ in STAGE_STEPS]
    shapes = []
    for step, batch in enumerate(debug_trainer.get_train_dataloader()):
        shapes.append(tuple(batch["input_ids"].shape))
        stage = 0 if step < 40 else 1 if step < 60 else 2
        for row in batch["input_ids"].tolist():
            counted[stage][source_of(row, tokenizer)] += len(row)
    assert shapes == [(8, 64)] * 60 + [(8, 256)] * 4, "the block size changes exactly at the budget of 30,720 tokens"
    for stage, (budget, mix) in enumerate(zip([20480, 10240, 8192], STAGE_MIX)):
        assert sum(counted[stage].values()) == budget
        for source, weight in mix.items():
            assert abs(counted[stage][source] / budget - weight) <= 0.02, (stage, counted[stage])
    final = [r for r in metrics(debug_pretrain_run) if "loss" in r][-1]
    assert {s: final[f"tokens/{s}"] for s in ("prose", "arith")} == {
        s: sum(c[s] for c in counted) for s in ("prose", "arith")}, "the logged per-source tokens are the real ones"


def test_index_shares_hold_at_every_prefix_and_sources_repeat_reshuffled(tmp_path):
    from smolalign.data.blocks import BlockFile, IndexStage, MixtureIndex, SeededPermutation

    for n in (1, 2, 3, 7, 64, 1000, 4099):
        assert sorted(SeededPermutation(n, seed=5)(i) for i in range(n)) == list(range(n))
    assert [SeededPermutation(1000, 1)(i) for i in range(20)] != [SeededPermutation(1000, 2)(i) for i in range(20)]
    files = {}
    for name, blocks in (("a", 10), ("b", 7), ("c", 3)):
        (tmp_path / name).mkdir()
        np.arange(blocks * 4, dtype="uint16").tofile(tmp_path / name / "blocks.bin")
        files[(name, 4)] = BlockFile(name, tmp_path / name, 4, blocks, "uint16", name, blocks)
    weights = {"a": 0.5, "b": 0.3, "c": 0.2}
    index = MixtureIndex([IndexStage("s", 100, 4, weights)], files, seed=3)
    seen = {name: [] for name in weights}
    for i in range(len(index)):
        name, _, block = index.locate(i)
        seen[name].append(block)
        for source, weight in weights.items():  # every prefix is within one block of its share
            assert abs(len(seen[source]) - weight * (i + 1)) < 1
    for name, blocks in seen.items():  # each pass reads every block once, in a new order
        passes = [blocks[i:i + files[(name, 4)].num_blocks] for i in range(0, len(blocks), files[(name, 4)].num_blocks)]
        assert all(sorted(p) == list(range(len(p))) for p in passes if len(p) == files[(name, 4)].num_blocks)
        assert passes[0] != passes[1]
    assert index[5]["input_ids"].tolist() == list(range(index.locate(5)[2] * 4, index.locate(5)[2] * 4 + 4))
    assert index.tokens_by_source(100) == {name: len(b) * 4 for name, b in seen.items()}


def test_blocks_are_cached_by_source_tokenizer_and_block_size(tmp_path):
    import datasets
    from transformers import AutoTokenizer

    from smolalign.data.blocks import tokenize_source

    tokenizer = AutoTokenizer.from_pretrained(DEBUG_DIR / "tokenizer")
    rows = datasets.Dataset.from_list([{"text": "the cat sat by the lake. " * 20}] * 10)
    first = tokenize_source(rows, "prose", "text", tokenizer, 16, cache_dir=tmp_path)
    stamp = (first.path / "blocks.bin").stat().st_mtime_ns
    again = tokenize_source(rows, "prose", "text", tokenizer, 16, cache_dir=tmp_path)
    assert again.path == first.path and (again.path / "blocks.bin").stat().st_mtime_ns == stamp
    assert tokenize_source(rows, "prose", "text", tokenizer, 32, cache_dir=tmp_path).path != first.path
    stream = np.fromfile(first.path / "blocks.bin", dtype=first.dtype)
    one = tokenizer("the cat sat by the lake. " * 20, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert stream.tolist() == (one * 10)[: first.num_blocks * 16], "documents end with <|endoftext|>, blocks are cut"


# ---------------------------------------------------------------- schedule, learning, context extension


def test_one_wsd_schedule_spans_the_stages(debug_pretrain_run):
    decay = round(0.2 * TOTAL)
    expected = {}
    for step in range(1, TOTAL + 1):  # the rate logged at step s is the one its update used: schedule(s - 1)
        s = step - 1
        factor = s / WARMUP if s < WARMUP else 1.0 if s < TOTAL - decay else 1 - (s - (TOTAL - decay)) / decay
        expected[step] = PEAK_LR * factor
    logged = {r["step"]: r["learning_rate"] for r in metrics(debug_pretrain_run) if "learning_rate" in r}
    for step in (WARMUP + 1, 30, 41, 61, TOTAL):  # end of warmup, mid-stable, both stage starts, end of decay
        assert logged[step] == pytest.approx(expected[step], rel=1e-6), step
    assert logged[41] == PEAK_LR and logged[TOTAL] == pytest.approx(PEAK_LR / decay)


def test_debug_pretraining_learns(debug_pretrain_run):
    trained = losses(debug_pretrain_run)
    assert trained[1] > 0.9 * math.log(512)
    assert trained[TOTAL] < 0.4 * math.log(512), trained


def test_context_extension_saves_and_reloads_8192_and_rope_130000(debug_pretrain_run):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(debug_pretrain_run)
    assert config.max_position_embeddings == 8192 and config.rope_parameters["rope_theta"] == 130000
    model = AutoModelForCausalLM.from_pretrained(debug_pretrain_run)
    dim = config.hidden_size // config.num_attention_heads
    expected = 1.0 / 130000 ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)
    assert torch.allclose(model.model.rotary_emb.inv_freq, expected)
    assert AutoTokenizer.from_pretrained(debug_pretrain_run).model_max_length == 8192


def test_rope_switch_recomputes_the_rotary_table():
    import torch
    from transformers import AutoTokenizer

    from smolalign.model.build import build_model
    from smolalign.train.pretrain.trainer import apply_rope

    model = build_model("tiny", AutoTokenizer.from_pretrained(DEBUG_DIR / "tokenizer"))
    ids = torch.arange(1, 200)[None]
    before = model(input_ids=ids).logits
    assert apply_rope(model, model.config, 130000.0, 8192)
    assert not apply_rope(model, model.config, 130000.0, 8192), "applying the same settings again changes nothing"
    assert not torch.allclose(model(input_ids=ids).logits, before)


def test_documents_attend_to_themselves_only_when_asked():
    import torch
    from transformers import AutoTokenizer

    from smolalign.model.build import build_model
    from smolalign.train.packing import use_document_attention
    from smolalign.train.pretrain.trainer import BlockCollator

    tokenizer = AutoTokenizer.from_pretrained(DEBUG_DIR / "tokenizer")
    model = build_model("tiny", tokenizer).eval()
    documents_alone = build_model("tiny", tokenizer).eval()  # same seed, same weights
    use_document_attention(documents_alone)
    first, second = [5, 6, 7, 8, 0], [9, 10, 11, 12]
    other_first = [13, 14, 15, 16, 0]
    for cross, by_document, should_change in ((True, False, True), (False, False, False), (False, True, False)):
        if by_document:  # sdpa on CPU: explicit document offsets instead of the 4-D mask
            model = documents_alone
        collate = BlockCollator(separator_id=0, cross_document_attention=cross, attn_implementation="sdpa",
                                by_document=by_document)
        batch = collate([{"input_ids": np.array(first + second)}, {"input_ids": np.array(other_first + second)}])
        with torch.no_grad():
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        changed = not torch.allclose(logits[0, 5:], logits[1, 5:], atol=1e-5)
        assert changed == should_change, f"cross_document_attention={cross}"
        if by_document:
            torch.testing.assert_close(logits, masked, atol=1e-5, rtol=1e-5)  # the same model either way
        elif not cross:
            masked = logits
        if not cross:
            assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]
            assert batch["labels"][0, 5].item() == -100, "no label crosses a document boundary"


def test_documents_apart_through_the_pretrain_trainer_on_cpu(tmp_path):
    """`data.cross_document_attention: false` on CPU: the Trainer's batches carry document offsets, and its loss
    equals the loss of the same blocks under the 4-D block-causal mask."""
    import copy
    import dataclasses

    import torch

    recipe = debug_recipe(f"training.output_dir={tmp_path / 'out'}", "training.report_to=[]",
                          "data.cross_document_attention=false")
    trainer = pretrain_trainer(recipe)
    model = trainer.model
    plain = copy.deepcopy(model)
    assert trainer.model.config._attn_implementation == "sdpa_by_document"
    batch = next(iter(trainer.get_train_dataloader()))
    assert "cu_seq_lens_q" in batch and "attention_mask" not in batch
    masked = dataclasses.replace(trainer.data_collator, by_document=False)(
        [{"input_ids": row.numpy()} for row in batch["input_ids"]])
    assert masked["attention_mask"].dim() == 4
    with torch.no_grad():
        loss = trainer.model.eval()(**batch).loss
        torch.testing.assert_close(plain.eval()(**masked).loss, loss, atol=1e-5, rtol=1e-5)


def test_a_consolidated_state_dict_missing_the_tied_embedding_still_saves_it(debug_trainer, tmp_path):
    """Injected fault: ZeRO-3's consolidated state dict holding only one name of the tied embedding/head pair."""
    import torch
    from transformers import AutoModelForCausalLM

    model = debug_trainer.model
    full = {k: v.clone() for k, v in model.state_dict().items()}
    for dropped in ("model.embed_tokens.weight", "lm_head.weight"):
        partial = {k: v for k, v in full.items() if k != dropped}
        debug_trainer._save(str(tmp_path / dropped), state_dict=partial)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / dropped)
        assert torch.equal(reloaded.model.embed_tokens.weight, full["model.embed_tokens.weight"]), dropped


def test_mfu_follows_the_palm_convention():
    from smolalign.model.build import count_parameters, llama_config
    from smolalign.train.mfu import flops_per_token, mfu

    config = llama_config("smollm2-360m")
    n = count_parameters(config)
    assert n == 361_821_120
    per_token = flops_per_token(n, config, 2048)
    assert per_token == 6 * n + 12 * 32 * 15 * 64 * 2048
    assert mfu(50_000, per_token, 989e12, 1) == pytest.approx(50_000 * per_token / 989e12)
    assert mfu(50_000, per_token, None, 1) is None  # CPU: reported as n/a


# ---------------------------------------------------------------- resume and the chain into sft


def _pretrain(out, data, *extra):
    sources = [f"data.sources.{name}.dataset={data / (name + '.jsonl')}" for name in ("prose", "arith")]
    return [sys.executable, "-m", "smolalign.cli", "pretrain", "debug/pretrain", f"training.output_dir={out}",
            *sources, *extra]


def _kill_after_checkpoint(command, out, step: int) -> None:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = out / f"checkpoint-{step}" / "smolalign_complete.json"
    deadline = time.time() + 900
    while not marker.exists():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """The debug recipe on copies of its data, killed after the checkpoint at step 20 (mid stage 1), resumed across
    the stage 1->2 boundary, killed again after step 60 (the first step of the context-extension stage), and
    resumed to the end. Returns (output dir, data dir, stderr of the last resume)."""
    from smolalign.train.checkpoints import newest_complete_checkpoint

    root = tmp_path_factory.mktemp("killed")
    data, out = root / "data", root / "run"
    shutil.copytree(REPO / "recipes/debug/data/pretrain", data)
    _kill_after_checkpoint(_pretrain(out, data), out, 20)
    assert newest_complete_checkpoint(out).name in ("checkpoint-20", "checkpoint-30")
    _kill_after_checkpoint(_pretrain(out, data, "--resume"), out, 60)
    assert newest_complete_checkpoint(out).name == "checkpoint-60"
    last = subprocess.run(_pretrain(out, data, "--resume"), capture_output=True, text=True)
    assert last.returncode == 0, last.stderr[-3000:]
    return out, data, last.stderr


@pytest.mark.slow  # whole commands in subprocesses
def test_sigkill_and_resume_mid_stage_and_across_stage_boundaries(killed_and_resumed, debug_pretrain_run):
    """The same loss at every step as the uninterrupted run: the same blocks and the same RoPE settings."""
    out, _, stderr = killed_and_resumed
    assert "resuming from" in stderr and "checkpoint-60" in stderr
    resumed, uninterrupted = losses(out), losses(debug_pretrain_run)
    assert sorted(resumed) == list(range(1, TOTAL + 1))
    assert resumed == pytest.approx(uninterrupted, rel=1e-5)
    # the epoch goes on from the resumed step (transformers would count it again from 0 after each resume)
    epochs = {r["step"]: r["epoch"] for r in metrics(out) if "loss" in r}
    assert epochs == pytest.approx({step: step / TOTAL for step in epochs})


@pytest.mark.slow  # reads the killed run of a subprocess (killed_and_resumed)
def test_resume_with_a_changed_recipe_or_data_is_refused_writing_nothing(killed_and_resumed):
    out, data, _ = killed_and_resumed
    before = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*"))
    stages = ("stages=[{name: stage-1, tokens: 20480, mixture: {prose: 0.6, arith: 0.4}}, {name: stage-2, tokens: "
              "10240, mixture: {prose: 0.4, arith: 0.6}}, {name: long-context, tokens: 8192, mixture: {prose: 0.5, "
              "arith: 0.5}, block_size: 256, rope_theta: 130000, max_position_embeddings: 8192}]")
    changed = run_cli(*_pretrain(out, data, "--resume", stages)[3:])
    assert_user_error(changed)
    assert "recipe changed" in changed.stderr and "stages" in changed.stderr
    (data / "prose.jsonl").write_text((data / "prose.jsonl").read_text().replace("lake", "pond"))
    moved = run_cli(*_pretrain(out, data, "--resume")[3:])
    assert_user_error(moved)
    assert "data differs" in moved.stderr
    assert sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*")) == before


def test_chain_pretrain_then_sft_on_its_output(debug_pretrain_run, tmp_path):
    from transformers import AutoConfig

    out = tmp_path / "sft"
    result = run_cli("sft", "debug/sft", f"model.name_or_path={debug_pretrain_run}", f"training.output_dir={out}",
                     "training.max_steps=4", "training.save_strategy=no", "training.eval_strategy=no")
    assert result.returncode == 0, result.stderr[-3000:]
    assert AutoConfig.from_pretrained(out).rope_parameters["rope_theta"] == 130000, "sft trained the pretrained model"


# ---------------------------------------------------------------- bad input


def _stage_override(mixture: str, tokens: int = 20480) -> str:
    return f"stages=[{{name: s, tokens: {tokens}, mixture: {mixture}}}]"


def test_weights_not_summing_to_one_fail_in_one_line_writing_nothing(tmp_path):
    result = run_cli("pretrain", "debug/pretrain", f"training.output_dir={tmp_path / 'out'}",
                     _stage_override("{prose: 0.5, arith: 0.4}"))
    assert_user_error(result)
    assert "sum to 0.9, not 1" in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("overrides, message", [
    ([_stage_override("{prose: 0.5, arith: 0.5}", tokens=100)], "under one step of 512"),
    ([_stage_override("{prose: 0.5, web: 0.5}")], "names 'web', not in data.sources"),
    (["data.sources.arith.text_column=body"], "source 'arith' has no column 'body'"),
    (["empty"], "source 'arith' holds no text"),
])
def test_bad_pretraining_input_is_one_line_and_writes_nothing(tmp_path, overrides, message):
    from smolalign.train.pretrain.command import run_pretrain

    if overrides == ["empty"]:
        overrides = [f"data.sources.arith.dataset={write_jsonl(tmp_path / 'empty.jsonl', [{'content': ''}] * 3)}"]
    with pytest.raises(UsageError) as error:
        run_pretrain("debug/pretrain", [f"training.output_dir={tmp_path / 'out'}", *overrides])
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_benchmark_runs_in_tiny_mode():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "pretrain_throughput.py"), "--tiny"],
                          capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("machine: ")
    assert "ratio smolalign pretrain / bare PyTorch loop (wall):" in done.stdout
    assert "ratio smolalign pretrain / bare PyTorch loop (cpu):" in done.stdout
    assert "resume overhead" in done.stdout


def test_report_curves_name_the_recipes_own_sources(tmp_path):
    from smolalign.train.pretrain.command import panels as curves

    recipe = debug_recipe(f"training.output_dir={tmp_path}")
    panels = dict(curves(recipe))
    assert panels["tokens per source"] == [f"tokens/{name}" for name in recipe.data.sources] == ["tokens/prose",
                                                                                                "tokens/arith"]
