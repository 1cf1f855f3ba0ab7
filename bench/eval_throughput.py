"""`smolalign eval --tasks ifeval` answering throughput: continuous batching against fixed batches and lm-eval.

Four ways to answer the same IFEval prompts (the first `--prompts` of the shipped file), with the same model, the
same token limit, greedy, through the model's chat template:
- smolalign eval: `LocalAnswers.stream`, the path `eval --tasks ifeval` answers through (continuous batching,
  eval/generate.py; `--batch` slots), without the record's appends;
- fixed batches: `model.generate` on `--batch` prompts at a time in file order, as eval answered IFEval before
  (eval/metrics.py `generate_batch`);
- lm-eval's `hf` model (`HFLM.generate_until`, stopped at the end-of-turn token) at batch 1, its default;
- lm-eval's `hf` model at its best batch size among `--lm-eval-batches` (each tried once, the fastest kept);
- with `--generate-batch`, transformers' own continuous batching (`model.generate_batch`), and whether its
  answers equal `model.generate`'s (eval/generate.py says why smolalign does not use it).
Each side runs `--reps` times, interleaved (lm-eval at batch 1, the slowest, last); each timing goes to stderr as
it comes; the table gives the median prompts/s and generated tokens/s (each
answer re-tokenized the same way for every side), and the ratios against fixed batches and lm-eval's best.

Run by hand: `python bench/eval_throughput.py --model DIR [--prompts 64] [--max-new-tokens 128] [--batch 32]
[--reps 3]`, e.g. with the real SmolLM2-135M-Instruct imported by `smolalign model import`; a small model that
stops on some prompts and runs to the limit on others is what continuous batching is for. `--tiny` runs the
`tiny` preset (random weights, so every answer runs to the limit) in seconds (tests/test_bench.py) and measures
nothing worth quoting.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def tiny_model(where: Path) -> str:
    from smolalign.model.write import init_model

    init_model("tiny", str(REPO / "recipes" / "debug" / "tokenizer"), str(where / "tiny-chat"), seed=0)
    return str(where / "tiny-chat")


def smolalign_side(model, tokenizer, placement, rows, limit, batch):
    from smolalign.eval.answers import LocalAnswers
    from smolalign.eval.tasks import ifeval

    answers = LocalAnswers(model, tokenizer, placement)
    return [text for _, text, _ in answers.stream(ifeval, rows, limit, batch)]


def fixed_side(model, tokenizer, rows, limit, batch):
    from smolalign.eval.metrics import chat_prompt_ids, generate_batch
    from smolalign.eval.tasks.ifeval import messages

    encoded = [chat_prompt_ids(tokenizer, messages(row)) for row in rows]
    return [text for k in range(0, len(encoded), batch)
            for text, _ in generate_batch(model, tokenizer, encoded[k:k + batch], limit)]


def generate_batch_side(model, tokenizer, rows, limit):
    from transformers import GenerationConfig

    from smolalign.eval.metrics import chat_prompt_ids
    from smolalign.eval.tasks.ifeval import messages
    from smolalign.model.chat_template import stop_token_ids

    stops = stop_token_ids(model, tokenizer)
    config = GenerationConfig(max_new_tokens=limit, do_sample=False, eos_token_id=stops,
                              pad_token_id=tokenizer.pad_token_id)
    encoded = [chat_prompt_ids(tokenizer, messages(row)) for row in rows]
    outputs = model.generate_batch(encoded, generation_config=config, max_new_tokens=limit, warmup=False)
    texts = []
    for output in outputs.values():  # in the order of the prompts
        tokens = list(output.generated_tokens)
        cut = next((i for i, token in enumerate(tokens) if token in stops), len(tokens))
        texts.append(tokenizer.decode(tokens[:cut], skip_special_tokens=True).strip())
    return texts


def lm_eval_side(hflm, tokenizer, rows, limit, batch):
    from lm_eval.api.instance import Instance

    from smolalign.eval.tasks.ifeval import messages

    hflm.batch_size_per_gpu = batch
    requests = [Instance("generate_until", row, (tokenizer.apply_chat_template(messages(row), tokenize=False,
                                                                               add_generation_prompt=True),
                                                 {"until": [], "do_sample": False, "max_gen_toks": limit}), i)
                for i, row in enumerate(rows)]
    return hflm.generate_until(requests, disable_tqdm=True)


def timed(run) -> tuple[float, list[str]]:
    start = time.perf_counter()
    texts = run()
    return time.perf_counter() - start, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--lm-eval-batches", default="8,16,32,64")
    parser.add_argument("--generate-batch", action="store_true", help="also time transformers' generate_batch")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    if args.tiny:
        args.prompts, args.max_new_tokens, args.batch, args.reps, args.lm_eval_batches = 6, 4, 4, 1, "2,4"
    import torch
    from lm_eval.models.huggingface import HFLM

    from smolalign.eval.tasks.ifeval import load_prompts
    from smolalign.model.load import load_model

    torch.manual_seed(0)
    scratch = tempfile.TemporaryDirectory()
    source = args.model or tiny_model(Path(scratch.name))
    model, tokenizer, placement = load_model(name_or_path=source)
    model.eval()
    hflm = HFLM(pretrained=model, tokenizer=tokenizer, device="cpu", batch_size=1, max_length=8192)
    rows = load_prompts(args.prompts)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared: other jobs may run), torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; model {source} ({model.num_parameters():,} "
          f"parameters, {placement.dtype}); {len(rows)} IFEval prompts, {args.max_new_tokens} new tokens, greedy, "
          f"batch {args.batch}, median of {args.reps}")

    candidates = [int(b) for b in args.lm_eval_batches.split(",")]
    best, chosen = candidates[0], "the one size given"
    if len(candidates) > 1:  # one candidate needs no trial
        tried = {b: timed(lambda b=b: lm_eval_side(hflm, tokenizer, rows, args.max_new_tokens, b))[0]
                 for b in candidates}
        best, chosen = min(tried, key=tried.get), "its best"
        print(f"lm-eval hf batch sizes tried once: {', '.join(f'{b}: {s:.1f} s' for b, s in tried.items())} -> {best}")
    sides = {
        "smolalign eval (continuous batching)": lambda: smolalign_side(model, tokenizer, placement, rows,
                                                                       args.max_new_tokens, args.batch),
        "model.generate, fixed batches (before)": lambda: fixed_side(model, tokenizer, rows, args.max_new_tokens,
                                                                     args.batch),
        f"lm-eval hf, batch {best} ({chosen})": lambda: lm_eval_side(hflm, tokenizer, rows, args.max_new_tokens,
                                                                       best),
        "lm-eval hf, batch 1": lambda: lm_eval_side(hflm, tokenizer, rows, args.max_new_tokens, 1),
    }
    if args.generate_batch:
        sides["transformers generate_batch"] = lambda: generate_batch_side(model, tokenizer, rows,
                                                                           args.max_new_tokens)
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    answers: dict[str, list[str]] = {}
    tokens: dict[str, int] = {}
    for rep in range(args.reps):
        for name, run in sides.items():
            took, texts = timed(run)
            seconds[name].append(took)
            answers[name] = texts
            print(f"rep {rep + 1}: {name}: {took:.1f} s", file=sys.stderr, flush=True)
            tokens[name] = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)

    print(f"\n{'side':42} {'prompts/s':>10} {'tokens/s':>10} {'tokens':>8} {'median s':>9}")
    rate = {}
    for name in sides:
        median = statistics.median(seconds[name])
        rate[name] = len(rows) / median
        print(f"{name:42} {rate[name]:10.3f} {tokens[name] / median:10.1f} {tokens[name]:8d} {median:9.1f}")
    ours, fixed, lm_best = (rate[name] for name in list(sides)[:3])
    if args.generate_batch:
        same = answers["transformers generate_batch"] == answers["model.generate, fixed batches (before)"]
        print(f"\ntransformers generate_batch answers equal model.generate's: {'yes' if same else 'no'}")
    print(f"\nratio smolalign eval / fixed batches: {ours / fixed:.2f}x")
    print(f"ratio smolalign eval / lm-eval best: {ours / lm_best:.2f}x")


if __name__ == "__main__":
    main()
