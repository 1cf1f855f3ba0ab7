"""Train a byte-level BPE tokenizer laid out like SmolLM2's: special tokens at ids 0-2 and the ChatML template."""

from __future__ import annotations

from pathlib import Path

from .chat_template import END_OF_TEXT, SMOLLM2_CHAT_TEMPLATE, SPECIAL_TOKENS
from ..errors import UsageError
from ..outputs import atomic_directory, claim_output


# Far above any published vocabulary (SmolLM2 49,152; the largest common ones ~256k): a typo, not a wish.
MAX_VOCAB_SIZE = 1 << 20


TEXT_SAMPLE = 1 << 20  # bytes read to decide: enough for any file's character, quick for a large corpus


def _is_text(name: str) -> bool:
    """UTF-8 without NUL bytes in the first megabyte (a cut multi-byte character at its end is allowed): random or
    binary bytes fail this, and BPE on them would learn byte noise that no text ever uses."""
    with open(name, "rb") as handle:
        sample = handle.read(TEXT_SAMPLE)
    if b"\0" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as error:
        return len(sample) == TEXT_SAMPLE and error.start >= len(sample) - 3
    return True


def _has_text(name: str) -> bool:
    with open(name, encoding="utf-8", errors="replace") as handle:
        return any(line.strip() for line in handle)


def _read_corpus(files: list[str]):
    for name in files:
        with open(name, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.strip():
                    yield line


def _interruptible(work) -> None:
    """Run `work()` in a thread that the main thread waits on in short steps. The Rust trainer runs no Python while
    it merges (the GIL released), so ctrl-C and SIGTERM, which Python handles in the main thread only, would
    otherwise wait until training is done (a minute on a large corpus)."""
    import threading

    failed: list[BaseException] = []

    def target():
        try:
            work()
        except BaseException as error:  # handed to the main thread
            failed.append(error)

    thread = threading.Thread(target=target, name="smolalign-bpe", daemon=True)  # daemon: ctrl-C does not wait
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if failed:
        raise failed[0]


def train_tokenizer(corpus: list[str], vocab_size: int, output: str, overwrite: bool = False, min_frequency: int = 2):
    """Train on text files and save a standard transformers tokenizer directory; returns the tokenizer."""
    for name in corpus:
        if Path(name).is_dir():
            raise UsageError(f"--corpus '{name}' is a folder: pass the text files in it, e.g. --corpus "
                             f"{Path(name) / 'part1.txt'}")
        if not Path(name).is_file():
            raise UsageError(f"corpus file '{name}' does not exist: pass existing text files to --corpus")
        if not _is_text(name):
            raise UsageError(f"corpus file '{name}' is not text (not UTF-8, or binary): pass plain text files, "
                             f"one document or paragraph a line")
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise UsageError(f"--vocab-size {vocab_size} is too small: a byte-level BPE needs at least 259")
    if vocab_size > MAX_VOCAB_SIZE:
        raise UsageError(f"--vocab-size {vocab_size:,} is far too large (SmolLM2 uses 49,152): give at most "
                         f"{MAX_VOCAB_SIZE:,}")
    if not any(_has_text(name) for name in corpus):
        raise UsageError(f"the corpus ({', '.join(corpus)}) has no text: pass non-empty text files to --corpus")
    claim_output(output, overwrite)

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,  # listed first, so they get ids 0, 1, 2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    _interruptible(lambda: bpe.train_from_iterator(_read_corpus(corpus), trainer=trainer))
    # BPE stops early when no pair of tokens repeats `min_frequency` times: the corpus cannot fill the vocabulary,
    # and a model sized for vocab_size would carry embeddings that no token ever uses.
    reached = bpe.get_vocab_size()
    if reached < vocab_size:
        raise UsageError(f"the corpus filled only {reached:,} of --vocab-size {vocab_size:,} tokens: give more text, "
                         f"or --vocab-size {reached} or less")

    # A base tokenizer, as SmolLM2's: bos = eos = <|endoftext|>. SFT switches eos to <|im_end|> for chat models.
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        model_max_length=2048,
    )
    tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    with atomic_directory(output, mark=True) as staging:
        tokenizer.save_pretrained(staging)
    return tokenizer
