"""Bad input as a new user types it: each through the real CLI (one `error:` line naming the problem and the fix,
exit code 2, no traceback, nothing written), and the training/LoRA guards directly on real TRL and peft objects.
"""

from __future__ import annotations

import http.server
import inspect
import re
import threading
import time

import pytest

from smolalign.errors import UsageError
from smolalign.train import dpo as DPO
from smolalign.train import sft as SFT

from .conftest import REPO, assert_user_error, run_cli, write_jsonl

GOOD_ROW = {"messages": [{"role": "user", "content": "2+2"}, {"role": "assistant", "content": "4"}]}
# A machine with no network, as a user has it: offline mode NOT set, and a hub endpoint that refuses connections
# (nothing listens on the discard port), so nothing here can reach the real hub even where a network exists.
NO_NETWORK = {"HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": "", "HF_DATASETS_OFFLINE": "",
              "HF_ENDPOINT": "http://127.0.0.1:9"}


def error_line(result) -> str:
    assert_user_error(result)
    return next(line for line in result.stderr.splitlines() if line.startswith("error:"))


def sft(tmp_path, *overrides, cwd=None, env=None):
    """The shipped debug SFT recipe with overrides, writing (if it ever wrote) to tmp_path/out."""
    return run_cli("sft", "debug/sft", f"training.output_dir={tmp_path / 'out'}", *overrides, cwd=cwd, env=env)


# ---------------------------------------------------------------- tokenizer and model commands


def test_tokenizer_train_on_an_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n")
    line = error_line(run_cli("tokenizer", "train", "--corpus", tmp_path / "empty.txt", "--vocab-size", 300,
                              "--output", tmp_path / "tok"))
    assert "has no text" in line and "--corpus" in line
    assert not (tmp_path / "tok").exists()


def test_tokenizer_vocab_size_absurd_or_beyond_the_corpus(tmp_path, corpus_file):
    line = error_line(run_cli("tokenizer", "train", "--corpus", corpus_file, "--vocab-size", 10_000_000,
                              "--output", tmp_path / "tok"))
    assert "far too large" in line and "49,152" in line
    # a corpus of a few hundred words cannot fill 100k tokens: say what it reached instead of writing fewer
    line = error_line(run_cli("tokenizer", "train", "--corpus", corpus_file, "--vocab-size", 100_000,
                              "--output", tmp_path / "tok"))
    reached = int(re.search(r"filled only ([\d,]+) of", line).group(1).replace(",", ""))
    assert 259 < reached < 100_000 and f"--vocab-size {reached} or less" in line
    assert not (tmp_path / "tok").exists()


def test_model_init_with_a_folder_that_is_not_a_tokenizer(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a tokenizer")
    line = error_line(run_cli("model", "init", "--preset", "tiny", "--tokenizer", tmp_path / "notes",
                              "--output", tmp_path / "m"))
    assert "is not a tokenizer directory" in line and "smolalign tokenizer train" in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("name,near", [("smollm2-999m", "smollm2-"), ("tinny", "tiny")])
def test_model_info_misspelt_preset(name, near):
    line = error_line(run_cli("model", "info", name))
    assert f"unknown preset '{name}' (did you mean {near}" in line and "hub id" in line


def test_hub_id_without_network_fails_fast_in_one_line():
    """No retry lines: the hub is asked once with a short timeout, then the cache alone is read."""
    start = time.monotonic()
    result = run_cli("model", "info", "someone/not-cached-model", env=NO_NETWORK)
    elapsed = time.monotonic() - start
    line = error_line(result)
    assert "nor in the hub cache" in line and "cannot be reached" in line and "127.0.0.1:9" in line
    assert "Retrying" not in result.stderr
    assert elapsed < 60  # a sanity bound only; today's retries took 25 s and more


class _HubThatAnswers(http.server.BaseHTTPRequestHandler):
    """A real local server standing in for a reachable hub that does not have the repo (404 to everything)."""

    def _missing(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = _missing

    def log_message(self, *args):
        pass


def test_reachable_hub_is_not_mistaken_for_offline():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubThatAnswers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**NO_NETWORK, "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}"}
        line = error_line(run_cli("model", "info", "someone/missing-model", env=env))
    finally:
        server.shutdown()
    assert "could not be loaded from the hub" in line and "cannot be reached" not in line


def test_missing_run_directory_says_what_creates_it(tmp_path):
    line = error_line(run_cli("model", "info", "runs/debug-sft", cwd=tmp_path, env=NO_NETWORK))
    assert "does not exist yet" in line and "`smolalign sft debug/sft` first" in line


def test_dpo_before_sft_says_run_sft_first(tmp_path):
    """The debug DPO recipe starts from runs/debug-sft: without it, one line at once, not a minute of retries."""
    result = run_cli("dpo", "debug/dpo", cwd=tmp_path, env=NO_NETWORK)
    line = error_line(result)
    assert "runs/debug-sft" in line and "`smolalign sft debug/sft` first" in line
    assert "Retrying" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_typo_in_a_local_path_gets_the_near_name(tmp_path):
    (tmp_path / "runs" / "debug-sft").mkdir(parents=True)
    line = error_line(run_cli("model", "info", "runs/debug-stf", cwd=tmp_path, env=NO_NETWORK))
    assert "did you mean runs/debug-sft?" in line


# ---------------------------------------------------------------- data files, through `smolalign sft`


def _bad_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    truncated = write_jsonl(tmp_path / "cut.jsonl", [GOOD_ROW] * 2)
    truncated.write_text(truncated.read_text() + '{"messages": [{"role": "user", "con\n')
    as_text = write_jsonl(tmp_path / "text.jsonl", [{"messages": "What is 2+2? It is 4."}] * 2)
    return {"empty": (empty, "is empty"),
            "truncated": (truncated, "line 3 is not valid JSON"),
            "messages_as_text": (as_text, "messages is text, expected a list of {role, content} messages")}


@pytest.mark.parametrize("case", ["empty", "truncated", "messages_as_text"])
def test_bad_data_file_through_sft(tmp_path, case):
    path, expected = _bad_files(tmp_path)[case]
    line = error_line(sft(tmp_path, f"data.dataset={path}", "data.eval_split=null", "training.eval_strategy=no"))
    assert expected in line and path.name in line
    assert not (tmp_path / "out").exists()


def test_data_layer_names_file_and_line(tmp_path):
    from smolalign.config import DataSection
    from smolalign.data import load_data
    from smolalign.data.loading import json_problem

    files = _bad_files(tmp_path)
    for path, expected in files.values():
        with pytest.raises(UsageError, match=re.escape(expected)):
            load_data(DataSection(dataset=str(path)), "chat")
    array = tmp_path / "rows.json"
    array.write_text('[\n{"messages": []},\n{"messages": \n')
    assert json_problem(array).startswith("line 4 is not valid JSON")
    write_jsonl(tmp_path / "list.jsonl", [GOOD_ROW]).write_text('{"a": 1}\n[1, 2]\n')
    assert json_problem(tmp_path / "list.jsonl") == "line 2 is a JSON list, not an object with one field per column"
    assert json_problem(write_jsonl(tmp_path / "fine.jsonl", [GOOD_ROW] * 3)) is None


def test_dataset_hub_id_offline_and_missing_run_path(tmp_path, monkeypatch):
    from smolalign.data.loading import load_split

    with pytest.raises(UsageError, match="nor in the hub cache, and HF_HUB_OFFLINE is set"):
        load_split("someone/no-such-dataset")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(UsageError, match="dataset path 'data/missing' does not exist"):
        load_split("data/missing")


def test_num_samples_must_be_positive():
    from smolalign.config import DataSection
    from smolalign.data.checks import check_data_section

    check_data_section(DataSection(dataset="x", num_samples=None))
    check_data_section(DataSection(dataset="x", num_samples=1))
    for bad in (0, -1):
        with pytest.raises(UsageError, match=f"data.num_samples={bad} must be at least 1"):
            check_data_section(DataSection(dataset="x", num_samples=bad))


def test_num_samples_negative_through_sft(tmp_path):
    """The recipe validator refuses it; data.checks.check_data_section does the same for callers of load_data."""
    line = error_line(sft(tmp_path, "data.num_samples=-1"))
    assert "data.num_samples=-1 must be at least 1" in line
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- training guards, on real TRL configs


def _sft_config(**values):
    from trl import SFTConfig

    return SFTConfig(output_dir="unused", bf16=False, activation_checkpointing=False, **values)


def _dpo_config(**values):
    from trl import DPOConfig

    return DPOConfig(output_dir="unused", bf16=False, activation_checkpointing=False, **values)


def test_check_training_passes_sane_settings():
    from transformers import TrainingArguments

    from smolalign.train.guards import check_training

    from smolalign.train.pretrain import command as pretrain

    check_training(_sft_config(max_length=128, packing=True, report_to=["tensorboard"], save_steps=100), SFT)
    check_training(_dpo_config(beta=0.5, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5]), DPO)
    check_training(TrainingArguments(output_dir="unused", max_steps=10, num_train_epochs=0), pretrain)


def test_check_training_names_every_problem_at_once():
    from smolalign.train.guards import check_training

    args = _sft_config(learning_rate=-1, per_device_train_batch_size=0, per_device_eval_batch_size=0, max_length=0,
                       gradient_accumulation_steps=0, num_train_epochs=-2, save_steps=0, report_to=["nope"])
    with pytest.raises(UsageError) as info:
        check_training(args, SFT)
    message = str(info.value)
    assert message.startswith("8 problems in the training settings")
    for key in ("learning_rate=-1", "per_device_train_batch_size=0", "per_device_eval_batch_size=0",
                "max_length=0", "gradient_accumulation_steps=0", "num_train_epochs=-2", "save_steps=0",
                "'nope', which transformers does not know"):
        assert key in message
    assert "\n" not in message


def test_report_to_an_integration_that_is_not_installed():
    import importlib.util

    from smolalign.train.guards import check_training

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(UsageError, match=r"'wandb', which is not installed: `pip install wandb`, or remove it"):
        check_training(_sft_config(report_to=["wandb"]), SFT)


def test_dpo_guard_reads_loss_names_from_trl():
    from trl import DPOTrainer

    from smolalign.train.dpo import loss_types
    from smolalign.train.guards import check_training

    # the names parsed from DPOConfig's help are exactly the ones DPOTrainer's loss code accepts
    source = inspect.getsource(DPOTrainer)
    accepted = re.findall(r'loss_type == "(\w+)"', source)
    assert loss_types() and set(loss_types()) == set(accepted)
    with pytest.raises(UsageError) as info:
        check_training(_dpo_config(beta=-1, loss_type=["sigmoid", "bogus"]), DPO)
    assert "training.beta=-1" in str(info.value) and "'bogus', unknown to TRL's DPOTrainer" in str(info.value)
    with pytest.raises(UsageError, match="exo_pair needs training.label_smoothing"):
        check_training(_dpo_config(loss_type=["exo_pair"]), DPO)
    with pytest.raises(UsageError, match="does not work with loss nca_pair"):
        check_training(_dpo_config(loss_type=["nca_pair"], f_divergence_type="js_divergence"), DPO)


def test_sft_guard_loss_type_and_packing_length():
    from smolalign.train.guards import check_training

    with pytest.raises(UsageError) as info:
        check_training(_sft_config(loss_type="mse", packing=True, max_length=None), SFT)
    assert "loss_type='mse'" in str(info.value) and "packing=true needs training.max_length" in str(info.value)


def test_check_eval_data():
    from smolalign.train.guards import check_eval_data

    check_eval_data(_sft_config(eval_strategy="epoch"), has_eval=True)
    check_eval_data(_sft_config(eval_strategy="no"), has_eval=False)
    with pytest.raises(UsageError, match="eval_strategy=epoch needs evaluation data: set data.eval_split"):
        check_eval_data(_sft_config(eval_strategy="epoch"), has_eval=False)


def test_training_problems_through_sft(tmp_path):
    result = sft(tmp_path, "training.learning_rate=-1", "training.per_device_train_batch_size=0",
                 "training.max_length=0", "training.gradient_accumulation_steps=0", "training.num_train_epochs=-2",
                 "training.save_steps=0")
    line = error_line(result)
    for key in ("learning_rate", "per_device_train_batch_size", "max_length", "gradient_accumulation_steps",
                "num_train_epochs", "save_steps"):
        assert f"training.{key}=" in line
    assert not (tmp_path / "out").exists()


def test_dpo_beta_and_loss_type_through_dpo(tmp_path):
    line = error_line(run_cli("dpo", "debug/dpo", f"training.output_dir={tmp_path / 'out'}", "training.beta=-1",
                              "training.loss_type=[bogus]", cwd=tmp_path))
    assert "training.beta=-1" in line and "'bogus'" in line
    assert not (tmp_path / "out").exists()


def test_eval_strategy_without_eval_data_through_sft(tmp_path):
    line = error_line(sft(tmp_path, "data.eval_split=null"))
    assert "training.eval_strategy=epoch needs evaluation data" in line
    assert not (tmp_path / "out").exists()


def test_data_check_after_tokenizing_leaves_no_directory(tmp_path):
    """The Trainer makes its output directory when built; a data check that fails after it removes it again."""
    line = error_line(sft(tmp_path, "training.max_length=12"))
    assert "have no assistant token inside max_length=12" in line
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- LoRA guard, on the real tiny model


@pytest.fixture(scope="module")
def tiny_model():
    from transformers import AutoTokenizer

    from smolalign.model.build import build_model

    return build_model("tiny", AutoTokenizer.from_pretrained(str(REPO / "recipes" / "debug" / "tokenizer")))


def _lora(**values):
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **values)


def test_check_lora_accepts_what_peft_accepts(tiny_model):
    from peft import get_peft_model

    from smolalign.train.guards import check_lora, linear_module_names

    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(
        linear_module_names(tiny_model))
    for config in (_lora(), _lora(target_modules="all-linear"), _lora(target_modules=["q_proj", "down_proj"]),
                   _lora(target_modules=r".*\.q_proj"), _lora(target_modules=["q_proj"], layers_to_transform=[3])):
        check_lora(tiny_model, config)
        get_peft_model(tiny_model, config).unload()  # and peft agrees: the adapter attaches


def test_check_lora_refuses_what_peft_fails_on_later(tiny_model):
    from smolalign.train.guards import check_lora

    with pytest.raises(UsageError) as info:
        check_lora(tiny_model, _lora(r=0, target_modules=["q_proj", "nope_proj"], lora_dropout=1.0))
    message = str(info.value)
    assert message.startswith("3 problems in the lora section") and "lora.r=0" in message
    assert "names nope_proj, not in the model" in message and "q_proj, up_proj, v_proj" in message
    with pytest.raises(UsageError, match="matches no module of the model"):
        check_lora(tiny_model, _lora(target_modules=r".*nope.*"))
    with pytest.raises(UsageError, match=r"layers_to_transform has \[7\], outside the model's layers 0-3"):
        check_lora(tiny_model, _lora(target_modules=["q_proj"], layers_to_transform=[7]))
    with pytest.raises(UsageError, match="lora.r=-1"):
        check_lora(None, _lora(r=-1))  # without a model: the config's own values only


@pytest.mark.parametrize("override,expected", [
    ("lora.r=0", "lora.r=0 must be >= 1"),
    ("lora.target_modules=[nope_proj]", "names nope_proj, not in the model: choose from its linear layers down_proj"),
])
def test_lora_problems_through_sft(tmp_path, override, expected):
    """The config's own values are checked before any model loads, the target names against the loaded model."""
    line = error_line(sft(tmp_path, override))
    assert expected in line
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- issue 25's cases, in-process (click's runner)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Files the cases below point at: accelerate configs that accelerate would refuse, a text source holding
    numbers, a plain file where a directory belongs, a directory where a file belongs."""
    root = tmp_path_factory.mktemp("ws")
    (root / "magic.yaml").write_text("distributed_type: MAGIC\nnum_processes: 2\n")
    (root / "empty.yaml").write_text("")
    (root / "zero.yaml").write_text("distributed_type: MULTI_GPU\nnum_processes: 0\n")
    (root / "a-dir").mkdir()
    (root / "a-file").write_text("not a directory\n")
    write_jsonl(root / "numbers.jsonl", [{"text": n} for n in range(50)])
    (root / "empty-run").mkdir()
    return root


def _sft(ws, *args):
    return ["sft", "debug/sft", f"training.output_dir={ws / 'out'}", *args]


def _pretrain(ws, *args):
    return ["pretrain", "debug/pretrain", f"training.output_dir={ws / 'out'}", *args]


# (id, argv with {ws} for the workspace, what the one line must say)
TRAIN_CASES = [
    ("flash-attn on cpu", lambda ws: _sft(ws, "model.attn_implementation=flash_attention_2"),
     "flash_attention_2 needs a CUDA GPU"),
    ("liger not installed", lambda ws: _sft(ws, "training.use_liger_kernel=true"), "needs liger-kernel"),
    ("varlen attention on cpu", lambda ws: _sft(ws, "speed.packed_attention=varlen"),
     "speed.packed_attention=varlen needs a CUDA GPU"),
    ("packed attention misspelt", lambda ws: _sft(ws, "speed.packed_attention=varlne"),
     "speed.packed_attention='varlne' has the wrong type: expected one of 'auto', 'mask', 'by_document', 'varlen'"),
    ("block size 0", lambda ws: _pretrain(ws, "data.block_size=0"), "data.block_size=0 must be at least 2"),
    ("text column of numbers", lambda ws: _pretrain(
        ws, f"data.sources={{prose: {{dataset: {ws / 'numbers.jsonl'}, text_column: text}}}}",
        "stages=[{name: s, tokens: 2048, mixture: {prose: 1.0}}]", "training.warmup_steps=0",
        "training.lr_scheduler_kwargs={num_decay_steps: 0.2}"), "column 'text' holds int64, not text"),
    ("accumulation beside a global batch", lambda ws: ["sft", "sft", f"training.output_dir={ws / 'out'}",
                                                       "training.gradient_accumulation_steps=8",
                                                       "batch.global_rows=128"],
     "training.gradient_accumulation_steps and batch.global_rows both set the batch on the command line"),
    ("accelerate type MAGIC", lambda ws: _sft(ws, "--accelerate-config", ws / "magic.yaml"),
     "distributed_type='MAGIC' is not one accelerate knows"),
    ("accelerate config empty", lambda ws: _sft(ws, "--accelerate-config", ws / "empty.yaml"), "is empty"),
    ("accelerate num_processes 0", lambda ws: _sft(ws, "--accelerate-config", ws / "zero.yaml"),
     "num_processes=0 must be a whole number >= 1"),
    ("recipe as accelerate config", lambda ws: _sft(ws, "--accelerate-config", REPO / "recipes/debug/sft.yaml"),
     "is a smolalign recipe, not an accelerate config"),
    ("accelerate config a directory", lambda ws: _sft(ws, "--accelerate-config", ws / "a-dir"), "is a directory"),
    ("num-processes 0", lambda ws: _pretrain(ws, "--num-processes", "0"), "--num-processes 0: give at least 1"),
    ("num-processes without a config", lambda ws: _pretrain(ws, "--num-processes", "2"),
     "--num-processes goes with --accelerate-config"),
    ("resume a missing run", lambda ws: _pretrain(ws, "--resume"), "there is no run in"),
    ("resume an empty folder", lambda ws: ["pretrain", "debug/pretrain", f"training.output_dir={ws / 'empty-run'}",
                                           "--resume"], "(it is empty)"),
    ("output is a file", lambda ws: ["sft", "debug/sft", f"training.output_dir={ws / 'a-file'}"],
     "is a file, not a directory"),
    ("pretrain with no recipe", lambda ws: ["pretrain", f"training.output_dir={ws / 'out'}"],
     "no recipe was given, so `smolalign pretrain` used the paper's recipe 'pretrain'"),
    ("dpo with no recipe", lambda ws: ["dpo", f"training.output_dir={ws / 'out'}"],
     "no recipe was given, so `smolalign dpo` used the paper's recipe 'dpo'"),
    ("plan: accelerate type MAGIC", lambda ws: ["plan", "debug/sft", "--accelerate-config", ws / "magic.yaml"],
     "distributed_type='MAGIC' is not one accelerate knows"),
    ("plan: accelerate config empty", lambda ws: ["plan", "debug/sft", "--accelerate-config", ws / "empty.yaml"],
     "is empty"),
    ("plan: num_processes 0", lambda ws: ["plan", "debug/sft", "--accelerate-config", ws / "zero.yaml"],
     "num_processes=0 must be a whole number >= 1"),
    ("plan: tokens per row -3", lambda ws: ["plan", "debug/sft", "--tokens-per-row", "-3", "--rows", "10"],
     "--tokens-per-row -3"),
    ("plan: rows 0", lambda ws: ["plan", "debug/sft", "--rows", "0", "--tokens-per-row", "100"], "--rows 0"),
]


@pytest.mark.parametrize("argv,expected", [case[1:] for case in TRAIN_CASES], ids=[case[0] for case in TRAIN_CASES])
def test_training_commands_refuse_in_one_line_writing_nothing(workspace, argv, expected):
    from .conftest import run_in_process, tree_digest

    before = tree_digest(workspace)
    result = run_in_process(*argv(workspace))
    line = error_line(result)
    assert expected in line, line
    assert "Loading weights" not in result.stderr
    assert tree_digest(workspace) == before and not (workspace / "out").exists()
    assert sorted(p.name for p in workspace.iterdir()) == ["a-dir", "a-file", "empty-run", "empty.yaml",
                                                           "magic.yaml", "numbers.jsonl", "zero.yaml"]


def test_resuming_another_commands_run_says_whose_run_it_is(tmp_path):
    from .conftest import run_in_process

    out = tmp_path / "run"
    first = run_in_process("sft", "debug/sft", f"training.output_dir={out}", "training.max_steps=1",
                           "training.save_steps=1", "training.report_to=[]", "training.eval_strategy=no")
    assert first.exit_code == 0, first.stderr[-3000:]
    wrong = run_in_process("pretrain", "debug/pretrain", f"training.output_dir={out}", "--resume")
    assert "holds a `smolalign sft` run, not a `smolalign pretrain` one" in error_line(wrong)


# ---------------------------------------------------------------- accepted and vague before (issue 31)


@pytest.mark.parametrize("argv,expected", [
    (["eval", "some-model", "--tasks", ""], "--tasks is empty: name a benchmark, e.g. --tasks ifeval"),
    (["eval", "some-model", "--tasks", "ifeval", "--num-fewshot", "3"],
     "--num-fewshot is for lm-eval tasks, and IFEval is zero-shot"),
    (["plan", "debug/pretrain", "--rows", "1000"], "--rows and --tokens-per-row are for SFT and DPO recipes"),
], ids=["eval-empty-tasks", "ifeval-fewshot", "plan-rows-pretrain"])
def test_flags_that_were_silently_ignored_are_refused(tmp_path, argv, expected):
    result = run_cli(*argv, cwd=tmp_path)
    assert expected in error_line(result)
    assert list(tmp_path.iterdir()) == [], "nothing written (an empty eval.json was, before)"


def test_a_lora_adapter_trained_on_a_preset_is_named_by_its_preset(tmp_path):
    """An adapter whose peft record names no base (or `preset:NAME`): the preset, from the run record."""
    import json

    adapter = tmp_path / "lora-run"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": None, "peft_type": "LORA"}))
    (adapter / "smolalign_run.json").write_text(json.dumps({"command": "sft", "recipe": {"model": {"preset": "tiny"}}}))
    line = error_line(run_cli("model", "export", adapter, "--output", tmp_path / "x.gguf"))
    assert "was trained on the preset 'tiny' (built in memory, never saved)" in line and "unnamed" not in line
    assert not (tmp_path / "x.gguf").exists()


def test_vague_messages_now_say_what_to_do(tmp_path, tiny_model_dir):
    empty = tmp_path / "empty-data"
    empty.mkdir()
    line = error_line(run_cli("pretrain", "debug/pretrain", f"training.output_dir={tmp_path / 'out'}",
                              f"data.sources.prose.dataset={empty}"))
    assert f"dataset '{empty}' is an empty folder: put the data files in it" in line
    split = error_line(run_cli("eval", tiny_model_dir, "--data", REPO / "recipes" / "debug" / "data" / "tasks-sft",
                               "--split", "validation"))
    assert "has no split 'validation' (it has train, test): choose one with --split" in split
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-data"]


class _NoGet(http.server.BaseHTTPRequestHandler):
    """A web server that implements no GET (HTTP 501), as a service that is not an API answers."""

    def log_message(self, *args):
        pass


class _NotFound(_NoGet):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_error(404)


@pytest.mark.parametrize("handler,url_tail,expected", [
    (_NotFound, "", "has no /models there (HTTP 404): give its API root, e.g. --base-url http://127.0.0.1:{port}/v1"),
    (_NotFound, "/v1", "has no /models (HTTP 404): it is not an OpenAI-compatible API server"),
    (_NoGet, "/v1", "has no /models (HTTP 501): it is not an OpenAI-compatible API server"),
], ids=["404-no-v1", "404", "501"])
def test_a_server_that_is_not_an_openai_api_gets_the_right_fix(tmp_path, handler, url_tail, expected):
    """Real local servers that answer, but not as an OpenAI-compatible API: "start it" would be the wrong advice."""
    from .conftest import run_in_process

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}{url_tail}"
    try:
        for argv in (["eval", "served-model", "--backend", "openai", "--base-url", url, "--tasks", "ifeval",
                      "--output", tmp_path / "eval"],
                     ["gen", "smol-rewrite", "--backend", "openai", "--base-url", url, "--model", "m", "--output",
                      tmp_path / "gen"]):
            line = error_line(run_in_process(*argv))
            assert expected.format(port=server.server_address[1]) in line and "start it" not in line, line
    finally:
        server.shutdown()
    assert list(tmp_path.iterdir()) == []
