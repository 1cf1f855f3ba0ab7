"""Pretraining data: text sources -> fixed token blocks on disk, and a seeded weighted index over them.

Why not `datasets.interleave_datasets` over streams: its probabilities weight *documents*, not tokens (0.7/0.3
gave 0.79/0.21 of the tokens on sources of different document lengths), and the Trainer resumes a stream by
replaying it from the start (days after a trillion tokens, all on rank 0). Instead, as nanotron's Nanoset:

1. Each source is tokenised once (`datasets.map`, `num_proc` workers), `<|endoftext|>` after every document,
   and cut into blocks of `block_size` tokens, written to one flat file (uint16 when the vocabulary fits).
   The file is cached under a key made of the source's fingerprint, the tokenizer's and the block size, so a
   rerun, a resume or another process reads it back instead of tokenising again.
2. Each stage draws from the sources through an index that is a pure function of the sample number: which
   source (a greedy interleaving that keeps every prefix within one block of its token share, since blocks are
   all the same size) and which block of it (the n-th draw from a source goes through a seeded permutation of
   its blocks, reshuffled on each pass). Nothing is materialised per sample, so the index costs O(1) memory and
   time at any scale, every rank can read any sample, and resuming at sample k is exact and instant.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..model.chat_template import END_OF_TEXT
from ..errors import UsageError

BLOCKS_FILE = "blocks.bin"
META_FILE = "meta.json"
PATTERN_PERIOD = 1 << 16  # samples; the interleaving repeats with this period (share error < 1/65536)


def default_cache_dir() -> Path:
    """Beside the Hugging Face caches (HF_HOME), so a user clears them together."""
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "smolalign" / "blocks"


def _digest(*parts) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]


def document_separator(tokenizer) -> int | None:
    """`<|endoftext|>` goes between documents, as in SmolLM2's pretraining, even with a tokenizer whose eos is a
    chat token (an instruct tokenizer's `<|im_end|>`); the tokenizer's eos when it has no such token."""
    vocab = tokenizer.get_vocab()
    return vocab.get(END_OF_TEXT, tokenizer.eos_token_id)


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return _digest(text, document_separator(tokenizer))


@dataclass
class BlockFile:
    """One source tokenised and cut into blocks of one size."""

    source: str
    path: Path
    block_size: int
    num_blocks: int
    dtype: str
    key: str
    documents: int

    def read(self):
        import numpy as np

        if self.__dict__.get("_array") is None:  # opened lazily: each data-loader worker maps the file itself
            self._array = np.memmap(self.path / BLOCKS_FILE, dtype=self.dtype, mode="r",
                                    shape=(self.num_blocks, self.block_size))
        return self._array

    def __getstate__(self):  # a memmap is not sent to worker processes; they reopen the file
        return {k: v for k, v in self.__dict__.items() if k != "_array"}


def check_text_column(dataset, source: str, text_column: str) -> None:
    if text_column not in dataset.column_names:
        raise UsageError(f"source '{source}' has no column '{text_column}' (it has {', '.join(dataset.column_names)}): "
                         f"set data.sources.{source}.text_column")
    if len(dataset) == 0:
        raise UsageError(f"source '{source}' is empty: point data.sources.{source}.dataset at text to train on")
    kind = dataset.features[text_column]
    if getattr(kind, "dtype", None) not in ("string", "large_string"):
        raise UsageError(f"source '{source}': column '{text_column}' holds {getattr(kind, 'dtype', kind)}, not text: "
                         f"set data.sources.{source}.text_column to the column that holds the documents")


def tokenize_source(dataset, source: str, text_column: str, tokenizer, block_size: int,
                    cache_dir: str | Path | None = None, num_proc: int | None = None) -> BlockFile:
    """Blocks of `block_size` tokens for one source, from the cache when this exact work was done before."""
    check_text_column(dataset, source, text_column)
    key = _digest(dataset._fingerprint, text_column, tokenizer_fingerprint(tokenizer), block_size)
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    final = root / f"{source}-{block_size}-{key}"
    if (final / META_FILE).is_file():
        meta = json.loads((final / META_FILE).read_text())
        return BlockFile(source, final, block_size, meta["num_blocks"], meta["dtype"], key, meta["documents"])

    eos = document_separator(tokenizer)
    if eos is None:
        raise UsageError("the tokenizer has neither <|endoftext|> nor an eos token to put between documents: use a "
                         "tokenizer that has one")

    def encode(batch):
        ids = tokenizer([t or "" for t in batch[text_column]], add_special_tokens=False)["input_ids"]
        return {"input_ids": [row + [eos] for row in ids]}

    tokenised = dataset.map(encode, batched=True, num_proc=num_proc, remove_columns=dataset.column_names,
                            desc=f"Tokenizing {source}")
    column = tokenised.data.column("input_ids")
    total = sum(len(chunk.flatten()) for chunk in column.chunks)
    real = total - len(tokenised)  # tokens that are not the separators
    if real == 0:
        raise UsageError(f"source '{source}' holds no text in column '{text_column}': point "
                         f"data.sources.{source}.dataset at text to train on")
    num_blocks = total // block_size
    if num_blocks == 0:
        raise UsageError(f"source '{source}' has {total:,} tokens, fewer than one block of {block_size}: add text or "
                         f"lower the block size")
    dtype = "uint16" if len(tokenizer) <= 1 << 16 else "uint32"
    meta = {"source": source, "block_size": block_size, "num_blocks": num_blocks, "dtype": dtype, "tokens": total,
            "documents": len(tokenised), "dropped_tail_tokens": total - num_blocks * block_size, "key": key}
    _write_entry(column, final, meta)
    return BlockFile(source, final, block_size, num_blocks, dtype, key, len(tokenised))


def _write_entry(column, final: Path, meta: dict) -> None:
    """Stream the token chunks into one flat file (bounded memory) in a staging folder, add the metadata, then
    rename: a cache entry is complete or absent, and a killed run leaves only a stale `.partial-PID` folder."""
    from rich.progress import Progress

    keep = meta["num_blocks"] * meta["block_size"]
    staging = final.with_name(final.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    written = 0
    with open(staging / BLOCKS_FILE, "wb") as handle, Progress(transient=True) as progress:
        task = progress.add_task(f"Packing {meta['source']}", total=keep)
        for chunk in column.chunks:
            tokens = chunk.flatten().to_numpy(zero_copy_only=False)[: keep - written].astype(meta["dtype"])
            tokens.tofile(handle)
            written += len(tokens)
            progress.update(task, completed=written)
            if written >= keep:
                break
    (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    try:
        staging.rename(final)
    except OSError:  # another process finished the same entry first: theirs is identical
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- the index


_MASK64 = (1 << 64) - 1


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class SeededPermutation:
    """A bijection of range(n) picked by a seed, evaluated one index at a time in O(1) memory: a 4-round Feistel
    network over the smallest even bit width that covers n, walking the cycle until it lands back in range."""

    def __init__(self, n: int, seed: int):
        self.n = n
        bits = max(2, (n - 1).bit_length())
        self.half = (bits + 1) // 2
        self.mask = (1 << self.half) - 1
        self.keys = [_splitmix(seed * 8 + r) for r in range(4)]

    def __call__(self, i: int) -> int:
        x = i
        while True:
            left, right = x >> self.half, x & self.mask
            for key in self.keys:
                left, right = right, left ^ (_splitmix(right ^ key) & self.mask)
            x = (left << self.half) | right
            if x < self.n:
                return x


def interleave(weights: list[float], length: int):
    """Source of each sample: each next sample goes to the source furthest behind its share, so every prefix is
    within one sample of `weights` (nanotron's Nanoset does the same). Returns (order, prefix counts)."""
    import numpy as np

    counts = [0] * len(weights)
    order = np.empty(length, dtype=np.int32)
    for i in range(length):
        k = max(range(len(weights)), key=lambda s: weights[s] * (i + 1) - counts[s])
        order[i] = k
        counts[k] += 1
    prefix = np.zeros((length + 1, len(weights)), dtype=np.int64)
    prefix[1:][np.arange(length), order] = 1
    return order, np.cumsum(prefix, axis=0)


@dataclass
class IndexStage:
    name: str
    samples: int
    block_size: int
    mixture: dict[str, float]


class MixtureIndex:
    """Map-style dataset over all stages in order: sample i -> {"input_ids": one block} (numpy int64)."""

    def __init__(self, stages: list[IndexStage], files: dict[tuple[str, int], BlockFile], seed: int):
        self.stages, self.files, self.seed = stages, files, seed
        self.starts = [0]
        for stage in stages:
            self.starts.append(self.starts[-1] + stage.samples)
        self._patterns = []
        drawn: dict[tuple[str, int], int] = {}  # draws from each block file before the stage starts
        for stage in stages:
            names = list(stage.mixture)
            period = min(stage.samples, PATTERN_PERIOD)
            order, prefix = interleave([stage.mixture[n] for n in names], period)
            offsets = {n: drawn.get((n, stage.block_size), 0) for n in names}
            for k, name in enumerate(names):
                drawn[(name, stage.block_size)] = offsets[name] + self._count(stage.samples, period, prefix, k)
            self._patterns.append((names, period, order, prefix, offsets))
        self.draws = drawn
        """Blocks drawn from each (source, block size) over all stages: above its block count, it repeats."""
        self._permutations: dict[tuple, SeededPermutation] = {}

    @staticmethod
    def _count(j: int, period: int, prefix, k: int) -> int:
        """Samples of source k among the first j of a stage."""
        full, rest = divmod(j, period)
        return full * int(prefix[period, k]) + int(prefix[rest, k])

    def __len__(self) -> int:
        return self.starts[-1]

    def stage_of(self, i: int) -> int:
        return bisect.bisect_right(self.starts, i) - 1

    def locate(self, i: int) -> tuple[str, int, int]:
        """(source, block size, block number) of sample i."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        s = self.stage_of(i)
        stage, (names, period, order, prefix, offsets) = self.stages[s], self._patterns[s]
        j = i - self.starts[s]
        k = int(order[j % period])
        name = names[k]
        draw = offsets[name] + self._count(j, period, prefix, k)
        file = self.files[(name, stage.block_size)]
        epoch, n = divmod(draw, file.num_blocks)
        seed_key = (name, stage.block_size, epoch)
        permutation = self._permutations.get(seed_key)
        if permutation is None:
            seed = int(_digest(self.seed, *seed_key), 16)
            permutation = self._permutations[seed_key] = SeededPermutation(file.num_blocks, seed)
        return name, stage.block_size, permutation(n)

    def __getitem__(self, i: int) -> dict:
        import numpy as np

        name, block_size, block = self.locate(int(i))
        return {"input_ids": np.asarray(self.files[(name, block_size)].read()[block], dtype=np.int64)}

    def tokens_by_source(self, samples: int) -> dict[str, int]:
        """Tokens drawn from each source by the first `samples` samples (all stages so far)."""
        out: dict[str, int] = {}
        for s, stage in enumerate(self.stages):
            taken = min(max(samples - self.starts[s], 0), stage.samples)
            names, period, _, prefix, _ = self._patterns[s]
            for k, name in enumerate(names):
                out[name] = out.get(name, 0) + self._count(taken, period, prefix, k) * stage.block_size
        return out
