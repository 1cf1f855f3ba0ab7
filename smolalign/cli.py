"""The `smolalign` command line: thin click wrappers over plain functions.

Nothing heavy (torch, transformers, trl, distilabel) is imported at module level, so `--help` answers fast;
each command imports what it needs when it runs. Bad input becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import NotImplementedYet, TrainingDiverged, UsageError

def _fail(message: str, code: int, promptly: bool = False) -> None:
    from .redact import redact_text

    click.echo(f"error: {redact_text(message)}", err=True)
    if promptly:
        from .stops import exit_promptly

        exit_promptly(code)
    sys.exit(code)


class SmolGroup(click.Group):
    """Turns expected failures into one line and an exit code; `--debug` shows the traceback instead."""

    def invoke(self, ctx):
        from .outputs import release_claims, stop_notes
        from .stops import disk_full_message, handle_sigterm, resume_command, watch_threads

        handle_sigterm()  # a scheduler's or `kill`'s stop is a ctrl-C: the same cleanup, line and exit code
        watch_threads()
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            release_claims()
            _fail("; ".join(filter(None, ["interrupted", stop_notes()])), 130, promptly=True)
        except Exception as error:
            if os.environ.get("SMOLALIGN_DEBUG"):
                raise
            full = disk_full_message(error, then=f"run again: {resume_command()}")
            if full is not None:
                _fail("; ".join(filter(None, [full, stop_notes()])), 1)
            if not isinstance(error, (UsageError, NotImplementedYet, TrainingDiverged)):
                raise
            _fail("; ".join(filter(None, [str(error), stop_notes()])), error.exit_code)
        finally:
            release_claims()  # an output a one-shot writer checked and then failed before writing


@click.group(cls=SmolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smolalign")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """smolalign: SmolLM2's recipe from raw text to an aligned chat model (pretrain, SFT, DPO, SmolTalk data)."""
    if debug:
        os.environ["SMOLALIGN_DEBUG"] = "1"


# ------------------------------------------------------------------ training commands


def _quiet() -> None:
    """Runs print progress, reports and real warnings only (see quiet.py for what is silenced and why)."""
    from .quiet import quiet_output

    quiet_output()


def _training_options(func):
    options = [
        click.argument("recipe", required=False),
        click.argument("overrides", nargs=-1),
        click.option("--print-config", is_flag=True, help="Print the resolved recipe and exit."),
        click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory (the old one is kept "
                     "beside it until the new run's final save)."),
        click.option("--resume", is_flag=True, help="Continue from the newest complete checkpoint in the output directory."),
        click.option("--merge", is_flag=True, help="With LoRA: also write merged full weights to OUTPUT/merged."),
        click.option("--accelerate-config", type=click.Path(), default=None,
                     help="Relaunch under `accelerate launch` with this config (zero3, fsdp, cpu-ddp or a file)."),
        click.option("--num-processes", type=int, default=None, help="Processes for `accelerate launch`."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _recipe_and_overrides(recipe: str | None, overrides: tuple, default: str | None) -> tuple[str, list[str], bool]:
    """(recipe, overrides, whether a recipe was named): a first argument with `=` is an override, not a recipe."""
    overrides = list(overrides)
    if recipe is not None and "=" in recipe:
        overrides.insert(0, recipe)
        recipe = None
    if recipe is None and default is None:
        raise UsageError("name a recipe, e.g. `smolalign sft debug/sft` (shipped: sft, sft-smol, debug/sft), or a "
                         "YAML file of your own")
    return recipe or default, overrides, recipe is not None


@main.command()
@_training_options
@click.option("--model", "model_path", default=None, help="Start from this model (a directory, hub id or GGUF file); "
              "sets model.name_or_path.")
def sft(recipe, overrides, model_path, **flags):
    """Supervised fine-tuning with TRL's SFTTrainer (2 epochs, assistant-only loss, packing). RECIPE: a YAML file or
    a shipped name (sft, sft-smol, debug/sft); key=value overrides follow it."""
    from .train.sft import run_sft

    _quiet()
    recipe, overrides, given = _recipe_and_overrides(recipe, overrides, None)
    run_sft(recipe, overrides, model_path=model_path, recipe_given=given, **flags)


@main.command()
@_training_options
@click.option("--model", "model_path", default=None, help="Start from this model (e.g. runs/sft); sets "
              "model.name_or_path.")
def dpo(recipe, overrides, model_path, **flags):
    """DPO with TRL's DPOTrainer on UltraFeedback-style pairs, starting from an SFT model. RECIPE (default dpo, the
    paper's): a YAML file or a shipped name (dpo, debug/dpo); key=value overrides follow it."""
    from .train.dpo import run_dpo

    _quiet()
    recipe, overrides, given = _recipe_and_overrides(recipe, overrides, "dpo")
    run_dpo(recipe, overrides, model_path=model_path, recipe_given=given, **flags)


@main.command()
@_training_options
def pretrain(recipe, overrides, merge, **flags):
    """Multi-stage base pretraining (data mixture per stage, WSD schedule, context extension). RECIPE (default
    pretrain, the paper's 1.7B): a YAML file or a shipped name (pretrain-135m, pretrain-360m, debug/pretrain)."""
    from .train.pretrain.command import run_pretrain

    _quiet()
    if merge:
        raise UsageError("--merge is for LoRA fine-tuning; pretraining writes full weights")
    recipe, overrides, given = _recipe_and_overrides(recipe, overrides, "pretrain")
    run_pretrain(recipe, overrides, recipe_given=given, **flags)


def _training_command(kind: str):
    """The module of a training command: its defaults, checks and facts (train/resolve.py's `TrainingCommand`)."""
    if kind == "sft":
        from .train import sft as command
    elif kind == "dpo":
        from .train import dpo as command
    else:
        from .train.pretrain import command
    return command


def _gpu_names() -> str:
    from .plan.gpus import GPUS

    return ", ".join(GPUS)


@main.command()
@click.argument("recipe")
@click.argument("overrides", nargs=-1)
@click.option("--gpus", type=int, default=None, help="GPUs the run spreads over (default: the accelerate config's "
              "num_processes, else 1).")
@click.option("--gpu", "gpu_name", default=None, help=f"GPU to plan for: {_gpu_names()} (default: this machine's, "
              "else H100).")
@click.option("--accelerate-config", type=click.Path(), default=None,
              help="The accelerate config the run will use (zero3, fsdp or a path): its strategy and processes.")
@click.option("--mfu", type=float, default=None, help="MFU for the time (default: the last one measured in bench/).")
@click.option("--rows", type=int, default=None, help="SFT/DPO: training rows, where the data cannot be read here.")
@click.option("--tokens-per-row", type=float, default=None, help="SFT/DPO: templated tokens a row (a pair for DPO).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--model", "model_path", default=None, help="The model the run starts from, as sft/dpo take it "
              "(model.name_or_path).")
def plan(recipe, overrides, gpus, gpu_name, accelerate_config, mfu, rows, tokens_per_row, as_json, model_path):
    """What a training run will cost before it starts: tokens, steps, FLOPs, memory per device, time."""
    from .plan.run import plan_run, recipe_kind
    from .train.resolve import with_model

    _quiet()
    kind = recipe_kind(recipe)
    if kind == "pretrain" and (rows is not None or tokens_per_row is not None):
        raise UsageError("--rows and --tokens-per-row are for SFT and DPO recipes: a pretraining run's size is its "
                         "stages' tokens (each stage's `tokens:` in the recipe): set those, or leave the flags out")
    result = plan_run(_training_command(kind), recipe, with_model(list(overrides), model_path), gpus=gpus,
                      gpu_name=gpu_name, accelerate_config=accelerate_config, mfu=mfu, rows=rows, tokens_per_row=tokens_per_row)
    if as_json:
        click.echo(json.dumps(result))
    else:
        from .plan.show import show

        show(result)


# ------------------------------------------------------------------ data generation


@main.command()
@click.argument("subset", required=False)
@click.argument("overrides", nargs=-1)
@click.option("--list", "list_subsets", is_flag=True, help="Name the subsets, one line each, and exit.")
@click.option("--backend", type=click.Choice(["openai", "transformers", "vllm"]), default=None,
              help="LLM backend (sets llm.backend).")
@click.option("--model", "model_name", default=None, help="Model name, local path or hub id (sets llm.model).")
@click.option("--base-url", default=None, help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1 (sets llm.base_url).")
@click.option("--num-rows", type=int, default=None, help="Rows to generate (sets num_rows).")
@click.option("--output", default=None, help="Output directory (sets output.dir; default data/SUBSET).")
@click.option("--ray", is_flag=True, help="Run the distilabel pipeline on Ray (local, or RAY_ADDRESS).")
@click.option("--print-config", is_flag=True, help="Print the resolved spec and exit.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
@click.option("--refilter", is_flag=True, help="Tally the run in --output again with the overrides' thresholds "
              "(filters.*, dedup); asks no model anything.")
def gen(subset, overrides, list_subsets, backend, model_name, base_url, num_rows, output, ray, print_config, overwrite,
        refilter):
    """Generate a SmolTalk subset with distilabel (magpie-ultra, smol-constraints, smol-rewrite, smol-summarization)."""
    from .gen import list_subsets as subset_lines, run_gen

    if list_subsets:
        for line in subset_lines():
            click.echo(line)
        return
    _quiet()
    if subset is None:
        raise UsageError("name a subset (`smolalign gen --list` lists them), e.g. `smolalign gen smol-rewrite`")
    run_gen(subset, list(overrides), backend=backend, model=model_name, base_url=base_url, num_rows=num_rows,
            output=output, ray=ray, print_config=print_config, overwrite=overwrite, refilter=refilter)


@main.command("eval")
@click.argument("model")
@click.option("--data", multiple=True, help="Held-out rows (file, directory or hub id), repeatable. The columns pick "
              "the metric: chosen+rejected -> preference accuracy; chat -> loss, perplexity and, when every answer "
              "is short, exact match; text -> loss, perplexity.")
@click.option("--tasks", multiple=True, help="Benchmarks, comma-separated. ifeval runs offline on the 541 prompts "
              "shipped with smolalign; other names (or task YAML paths) go to lm-evaluation-harness (needs "
              "`pip install 'smolalign[eval]'`).")
@click.option("--metric", "metrics", multiple=True, help="loss, exact_match or preference (repeatable): measure these "
              "instead of choosing from the columns.")
@click.option("--split", default=None, help="Split to read (default: test; train for a single file).")
@click.option("--limit", type=int, default=None, help="At most this many rows per dataset, prompts or task.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--max-new-tokens", type=int, default=None, help="Longest reply: 1280 for ifeval (the SmolLM2 card's), "
              "256 for exact match.")
@click.option("--text-column", default="text", show_default=True, help="Column that holds plain text.")
@click.option("--num-fewshot", type=int, default=None, help="Few-shot examples for lm-eval tasks (default: the task's).")
@click.option("--chat-template/--no-chat-template", default=None,
              help="Run lm-eval tasks through the chat template (default: yes for chat models).")
@click.option("--backend", type=click.Choice(["transformers", "openai"]), default="transformers", show_default=True,
              help="openai: MODEL is the name an OpenAI-compatible server at --base-url serves (--tasks ifeval).")
@click.option("--base-url", default=None, help="With --backend openai: the server, e.g. http://127.0.0.1:8000/v1.")
@click.option("--output", type=click.Path(), default=None,
              help="Directory for eval.json (default: the model directory; needed for a hub id or a server).")
@click.option("--overwrite", is_flag=True, help="Start a built-in task's answers over (ifeval-responses.jsonl).")
def eval_command(model, data, tasks, metrics, split, limit, batch_size, max_new_tokens, text_column, num_fewshot,
                 chat_template, backend, base_url, output, overwrite):
    """Held-out loss and perplexity, exact match, preference accuracy, IFEval, lm-eval benchmarks; writes eval.json."""
    from .eval.run import run_eval, task_names
    from .locks import lock_existing

    _quiet()
    if tasks and not task_names(list(tasks)):
        raise UsageError("--tasks is empty: name a benchmark, e.g. --tasks ifeval (or leave --tasks out and give "
                         "--data)")
    if num_fewshot is not None and set(task_names(list(tasks))) == {"ifeval"}:
        raise UsageError("--num-fewshot is for lm-eval tasks, and IFEval is zero-shot (SmolLM2's setting): leave "
                         "--num-fewshot out, or add the task it is for")
    with lock_existing(output or model, create=output is not None):  # one eval at a time writes eval.json
        run_eval(model, list(data), list(tasks), output, metrics=list(metrics) or None, split=split, limit=limit,
                 batch_size=batch_size, max_new_tokens=max_new_tokens, text_column=text_column,
                 num_fewshot=num_fewshot, chat_template=chat_template, backend=backend, base_url=base_url,
                 overwrite=overwrite)


@main.command()
@click.argument("model")
@click.option("--prompt", default=None, help="Answer this one message, print only the answer and exit ('-': stdin).")
@click.option("--system", default=None, help="System prompt.")
@click.option("--max-new-tokens", type=int, default=256, show_default=True)
@click.option("--temperature", type=float, default=0.2, show_default=True, help="0 for greedy decoding.")
@click.option("--top-p", type=float, default=0.9, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed for sampling, for replies that repeat.")
@click.option("--raw", is_flag=True, help="Continue the text as it is, without the chat template (what a model "
              "without a template gets).")
def chat(model, prompt, system, max_new_tokens, temperature, top_p, seed, raw):
    """Chat with a model in the terminal through its chat template (/reset, /system TEXT, /exit); a model without
    one (or --raw) continues each prompt as plain text."""
    from .chat import run_chat

    run_chat(model, prompt=prompt, system=system, max_new_tokens=max_new_tokens, temperature=temperature,
             top_p=top_p, seed=seed, raw=raw)


# ------------------------------------------------------------------ the whole pipeline


@main.command()
@click.option("--output", default="runs/demo", show_default=True, help="Directory for every stage and the report.")
@click.option("--size", type=click.Choice(["tiny", "small"]), default="small", show_default=True,
              help="small: the debug recipes as shipped (~10 min on 2 cores); tiny: fewer steps, a few minutes.")
def demo(output, size):
    """Raw text to an aligned chat model on this CPU: tokenizer, pretrain, gen, SFT, DPO, each stage evaluated."""
    from .demo.pipeline import run_demo
    from .locks import lock_existing

    _quiet()
    with lock_existing(output, create=True):  # one demo at a time in a directory
        run_demo(output, size)


# ------------------------------------------------------------------ tokenizer and model


@main.group()
def tokenizer():
    """Train tokenizers."""


@tokenizer.command("train")
@click.option("--corpus", multiple=True, required=True, help="Text file(s), one document or paragraph a line.")
@click.option("--vocab-size", type=int, required=True, help="Vocabulary size (SmolLM2: 49152).")
@click.option("--output", required=True, type=click.Path(), help="Directory to write the tokenizer to.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
def tokenizer_train(corpus, vocab_size, output, overwrite):
    """Byte-level BPE with <|endoftext|>, <|im_start|>, <|im_end|> at ids 0-2 and SmolLM2's chat template."""
    from .model.tokenizer import train_tokenizer

    _quiet()
    tok = train_tokenizer(list(corpus), vocab_size, output, overwrite=overwrite)
    click.echo(f"tokenizer with {len(tok)} tokens written to {output}")


@main.group()
def model():
    """Create and inspect models built from the one SmolLM2 definition."""


def _preset_names() -> str:
    from .model.presets import PRESETS

    return ", ".join(PRESETS)


@model.command("init")
@click.option("--preset", required=True, help=f"One of {_preset_names()}.")
@click.option("--tokenizer", "tokenizer_path", required=True, help="Tokenizer directory or hub id.")
@click.option("--output", required=True, type=click.Path(), help="Directory for the model and tokenizer.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
def model_init(preset, tokenizer_path, output, seed, overwrite):
    """A randomly initialised model, saved as a standard Hugging Face directory."""
    from .model.write import init_model

    _quiet()
    result = init_model(preset, tokenizer_path, output, overwrite=overwrite, seed=seed)
    click.echo(f"{preset}: {result['parameters']:,} parameters written to {output}")


@model.command("import")
@click.argument("gguf_file")
@click.option("--output", required=True, type=click.Path(), help="Directory for the Hugging Face model.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True,
              help="dtype of the dequantized weights.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
def model_import(gguf_file, output, dtype, overwrite):
    """A GGUF file (llama.cpp, Ollama) as a standard Hugging Face directory: weights, tokenizer, chat template."""
    from .model.gguf import import_file

    _quiet()
    result = import_file(gguf_file, output, dtype=dtype, overwrite=overwrite)
    click.echo(f"{Path(gguf_file).name}: {result['parameters']:,} parameters ({dtype}) written to {output} "
               f"(sha256 {result['sha256'][:16]})")


@model.command("export")
@click.argument("model")
@click.option("--output", required=True, help="The .gguf file to write, for llama.cpp (`llama-cli -m FILE`) or Ollama.")
@click.option("--dtype", default="f16", show_default=True, help="Weights in the file: f32, f16, bf16 or q8_0 (8-bit).")
@click.option("--name", default=None, help="The model's name in the file (default: the model folder's name).")
@click.option("--license", "license_name", default=None, help="Licence in the file, e.g. apache-2.0 (default: the "
              "model card's).")
@click.option("--overwrite", is_flag=True, help="Replace an existing GGUF file (only once the new one is complete).")
def model_export(model, output, dtype, name, license_name, overwrite):
    """A model directory (SFT, DPO, pretrain, model init, or a LoRA adapter, merged) as one GGUF file."""
    from .locks import file_lock
    from .model.gguf_export import export_gguf
    from .outputs import check_file_output
    from .stops import expect_space, export_bytes

    _quiet()
    check_file_output(output)  # before the model loads
    expect_space(output, export_bytes(model, dtype), "the GGUF file")
    with file_lock(output):
        result = export_gguf(model, output, dtype=dtype, overwrite=overwrite, name=name, license=license_name)
    click.echo(f"{result['parameters']:,} parameters ({dtype}, {result['bytes'] / 2**20:,.1f} MiB) written to "
               f"{output}: `llama-cli -m {output}` chats with it")


@model.command("info")
@click.argument("preset_or_path")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--trust-remote-code", is_flag=True, help="Allow code shipped with a hub model.")
def model_info(preset_or_path, as_json, trust_remote_code):
    """Architecture and exact parameter count, without allocating the weights."""
    from .model.info import model_info as info_of

    info = info_of(preset_or_path, trust_remote_code=trust_remote_code)
    if as_json:
        click.echo(json.dumps(info))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{preset_or_path}", show_header=False)
    for key, value in info.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    Console().print(table)


if __name__ == "__main__":
    main()
