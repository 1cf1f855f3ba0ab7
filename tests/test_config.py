"""Recipes: precedence, did-you-mean, type errors, every problem at once, every shipped recipe loads."""

import pytest

from smolalign.config import load_recipe, parse_overrides
from smolalign.errors import UsageError
from smolalign.resources import resolve_recipe, shipped_recipes

from .conftest import run_cli


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


BASE = """
recipe: sft
model: {preset: tiny, tokenizer: some/tok}
data: {dataset: data.jsonl}
training: {output_dir: out, learning_rate: 2.0e-4, num_train_epochs: 3}
"""


def test_precedence_defaults_yaml_cli(tmp_path):
    from smolalign.train import sft
    from smolalign.train.resolve import recipe_defaults
    from smolalign.train.speed import Machine

    recipe = load_recipe(str(write(tmp_path, BASE)), "sft", ["training.learning_rate=1e-4"],
                         recipe_defaults(sft, Machine(gpu=False)))
    assert recipe.training["learning_rate"] == 1e-4            # CLI beats YAML
    assert recipe.training["num_train_epochs"] == 3.0         # YAML beats default (2)
    assert recipe.training["assistant_only_loss"] is True     # default kept where nothing overrides it
    assert recipe.training_args().learning_rate == 1e-4


def test_yaml_no_stays_a_string_and_exponent_is_a_float(tmp_path):
    recipe = load_recipe(str(write(tmp_path, BASE)), "sft", ["training.save_strategy=no", "training.weight_decay=1e-2"])
    assert recipe.training["save_strategy"] == "no"
    assert recipe.training["weight_decay"] == pytest.approx(0.01)


def test_unknown_key_suggests_nearest(tmp_path):
    with pytest.raises(UsageError, match=r"did you mean training\.learning_rate\?"):
        load_recipe(str(write(tmp_path, BASE)), "sft", ["training.learnig_rate=1e-4"])


def test_key_without_section_suggests_dotted_key(tmp_path):
    with pytest.raises(UsageError, match=r"did you mean training\.learning_rate\?"):
        load_recipe(str(write(tmp_path, BASE)), "sft", ["learning_rate=1e-4"])


def test_every_problem_reported_at_once(tmp_path):
    with pytest.raises(UsageError) as info:
        load_recipe(str(write(tmp_path, BASE)), "sft",
                    ["training.learnig_rate=1", "training.num_train_epochs=lots", "data.splt=x", "model.dtype=fp8"])
    message = str(info.value)
    assert message.startswith("4 problems")
    assert "training.num_train_epochs='lots' has the wrong type: expected float" in message
    assert "did you mean data.split?" in message
    assert "model.dtype='fp8'" in message
    assert "\n" not in message


def test_model_and_data_need_exactly_one_source(tmp_path):
    text = "model: {name_or_path: a/b, preset: tiny}\ndata: {}\ntraining: {output_dir: o}\n"
    with pytest.raises(UsageError) as info:
        load_recipe(str(write(tmp_path, text)), "sft")
    assert "exactly one of model.name_or_path or model.preset" in str(info.value)
    assert "exactly one of data.dataset or data.mixture" in str(info.value)


def test_bf16_on_cpu_is_explained(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    recipe = load_recipe(str(write(tmp_path, BASE)), "sft", ["training.bf16=true"])
    with pytest.raises(UsageError, match="add training.bf16=false"):
        recipe.training_args()


def test_wrong_command_for_recipe():
    with pytest.raises(UsageError, match="is a dpo recipe"):
        load_recipe("dpo", "sft")


def test_override_syntax_error():
    with pytest.raises(UsageError, match="not key=value"):
        parse_overrides(["training.learning_rate"])


def test_bare_name_resolves_to_shipped_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not in the checkout: still found
    assert resolve_recipe("sft").name == "sft.yaml"
    assert resolve_recipe("debug/sft").parent.name == "debug"
    with pytest.raises(UsageError, match="shipped name"):
        resolve_recipe("nope")


@pytest.mark.parametrize("path", shipped_recipes(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_recipe_validates(path):
    import importlib

    import torch

    from smolalign.config import read_yaml

    kind = read_yaml(path)["recipe"]
    module = {"pretrain": "smolalign.train.pretrain.command"}.get(kind, f"smolalign.train.{kind}")
    command = importlib.import_module(module)  # each command module declares its defaults and schema
    # the GPU recipes ask for bf16, which TRL refuses on a CPU-only machine: check everything else here
    cpu = [] if torch.cuda.is_available() else ["training.bf16=false"]
    from smolalign.train.resolve import recipe_defaults
    from smolalign.train.speed import machine_facts

    recipe = load_recipe(str(path), kind, cpu, recipe_defaults(command, machine_facts()), schema=command.SCHEMA)
    assert recipe.training_args().output_dir == recipe.training["output_dir"]
    assert path.read_text().startswith("#"), "each recipe starts with a comment naming its source and command"


def test_print_config_via_cli(tmp_path):
    result = run_cli("sft", "debug/sft", "training.learning_rate=5e-4", "--print-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "learning_rate: 0.0005" in result.stdout
    assert not any(tmp_path.iterdir()), "--print-config writes nothing"


def test_cli_reports_bad_recipe_in_one_line(tmp_path):
    result = run_cli("sft", "debug/sft", "training.learnig_rate=1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "did you mean training.learning_rate?" in result.stderr
    assert "Traceback" not in result.stderr
