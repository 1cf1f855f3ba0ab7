"""GGUF checkpoints (the files llama.cpp and Ollama use) wherever a model is named.

transformers reads a GGUF file through the `gguf` package and dequantizes it, but the model it returns still
carries the GGUF `quantization_config`: `save_pretrained` refuses it, TRL's DPO cannot reload a reference copy
from it, and `transformers serve` or distilabel cannot be pointed at a file at all. So a GGUF file becomes a
standard Hugging Face directory once (`import_gguf`: config, safetensors, tokenizer with the file's own chat
template, generation config), and every command loads that directory as it loads any other. Commands that are
given the file itself import it into a cache keyed by the file's sha256 (float32, so that no precision is lost
before the run casts to its own dtype); `smolalign model import` writes one where the user says.

A model name points at a GGUF file when it is a file that starts with the GGUF magic, or a folder with no
config.json holding exactly one `.gguf` file (or several and a `gguf_file` naming one).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .chat_template import END_OF_TEXT, IM_END

MAGIC = b"GGUF"
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class GGUFSource:
    path: Path
    architecture: str
    sha256: str

    def record(self) -> dict:
        """What a run record says of its starting weights."""
        return {"gguf_file": str(self.path), "sha256": self.sha256}


def _is_gguf_file(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == MAGIC
    except OSError:
        return False


def find_gguf(name: str | None, gguf_file: str | None = None) -> Path | None:
    """The GGUF file `name` points at, or None when it names something else (a preset, hub id, HF directory)."""
    if not name:
        return None
    path = Path(name).expanduser()
    if path.is_file():
        if _is_gguf_file(path):
            return path
        if path.suffix.lower() == ".gguf":
            raise UsageError(f"'{name}' is named .gguf but is not a GGUF file (no GGUF header): download it again")
        return None
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    if gguf_file:
        chosen = path / gguf_file
        if not chosen.is_file():
            raise UsageError(f"model.gguf_file={gguf_file!r} is not in '{name}': give a file that the folder holds")
        return chosen
    found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise UsageError(f"'{name}' holds {len(found)} GGUF files ({names}): name one, e.g. {path / found[0].name}")
    return found[0] if found else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inspect_gguf(path: Path) -> GGUFSource:
    """Read the header and tensor table (memory-mapped, seconds): a truncated file or an architecture that
    transformers cannot load fails here, before anything is written."""
    stat = Path(path).stat()
    return _inspect(Path(path).resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _inspect(path: Path, size: int, mtime_ns: int) -> GGUFSource:
    """Checked once per file version in a process (the checks run before loading, and loading asks again)."""
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        reader = GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        architecture = bytes(field.parts[field.data[0]]).decode()
        last = max(reader.tensors, key=lambda t: t.data_offset)
        complete = last.data_offset + last.n_bytes <= size
    except (ValueError, IndexError, KeyError, OSError) as error:
        raise UsageError(f"GGUF file '{path}' is truncated or damaged ({type(error).__name__}): download it "
                         "again") from error
    if not complete:
        raise UsageError(f"GGUF file '{path}' is truncated (its tensors run past the end): download it again")
    readable = sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"})  # mapping keys, not models
    if _transformers_name(architecture) not in readable:
        raise UsageError(f"GGUF file '{path}' holds a '{architecture}' model, which transformers cannot load from "
                         f"GGUF (it reads {', '.join(readable)}): use a Hugging Face directory of that model instead")
    return GGUFSource(path=path, architecture=architecture, sha256=sha256_of(path))


def _transformers_name(architecture: str) -> str:
    """llama.cpp's architecture name as transformers' GGUF loader renames it before its own check."""
    renames = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "t5encoder": "t5", "gpt-oss": "gpt_oss",
               "minimax-m2": "minimax_m2"}
    return renames.get(architecture, architecture)


def gguf_config(source: GGUFSource):
    """The model's transformers config, read from the file's metadata (no weights)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(source.path.parent), gguf_file=source.path.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return config


def import_gguf(source: GGUFSource, output: str | Path, dtype: str = "float32", overwrite: bool = False) -> dict:
    """Write the file as a standard Hugging Face directory: dequantized weights in `dtype`, the file's tokenizer
    and chat template, and a generation config that stops on `<|im_end|>` where the template ends turns with it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..outputs import atomic_directory, claim_output, respect_umask
    
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype} is not one of {', '.join(DTYPES)}")
    claim_output(output, overwrite)
    folder, name = str(source.path.parent), source.path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    split_digits_as_the_file_says(tokenizer, source.path)
    with progress_on_a_terminal_only():
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # the weights are plain tensors now; this only makes save_pretrained refuse
    config.architectures = [type(loaded).__name__]
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    model.to(getattr(torch, dtype))
    set_stop_tokens(model, tokenizer)
    tokenizer.model_max_length = config.max_position_embeddings  # GGUF leaves it unset (1e30)
    with atomic_directory(output, mark=True) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        respect_umask(staging)
    return {"output": str(output), "parameters": sum(p.numel() for p in model.parameters()), "dtype": dtype,
            "chat_template": bool(tokenizer.chat_template), **source.record()}


@contextlib.contextmanager
def progress_on_a_terminal_only():
    """transformers' dequantizing bar redraws once a tensor: in a log file or a pipe that is a wall of carriage
    returns. tqdm's `disable=None` shows it on a terminal only; transformers calls tqdm by its module's name."""
    import transformers.modeling_gguf_pytorch_utils as loader

    original = loader.tqdm
    loader.tqdm = functools.partial(original, disable=None)
    try:
        yield
    finally:
        loader.tqdm = original


# llama.cpp's pre-tokenizers that split every digit before GPT-2's regex (`\\p{N}`, then the GPT-2 pattern):
# SmolLM2's tokenizer.json does this with a Digits(individual_digits) step before its ByteLevel one.
DIGIT_SPLIT_PRE = ("smollm", "starcoder")


def read_metadata_string(path: Path, key: str) -> str | None:
    """One string of the file's metadata (memory-mapped: no tensor is read), or None when the file lacks it."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get(key)
    return bytes(field.parts[field.data[0]]).decode() if field is not None else None


def read_pre_tokenizer(path: Path) -> str | None:
    """The file's `tokenizer.ggml.pre` (llama.cpp's name for how text is split before BPE), if it has one."""
    return read_metadata_string(path, "tokenizer.ggml.pre")


def split_digits_as_the_file_says(tokenizer, path: Path) -> None:
    """transformers builds a GGUF's byte-level tokenizer with GPT-2's splits only, so "2024" would become other
    tokens than the model was trained on; where the file says digits are split one by one, split them."""
    from tokenizers import pre_tokenizers

    if read_pre_tokenizer(path) in DIGIT_SPLIT_PRE:
        tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])


def import_file(name: str, output: str, dtype: str = "float32", overwrite: bool = False) -> dict:
    """`smolalign model import`: a GGUF file (or a folder holding one) -> a Hugging Face directory at `output`."""
    path = find_gguf(name)
    if path is None:
        place = Path(name).expanduser()
        what = ("does not exist" if not place.exists() else "is a folder with no .gguf file in it" if place.is_dir()
                else "is not a GGUF file (no GGUF header)")
        raise UsageError(f"'{name}' {what}: give a .gguf file, e.g. one that llama.cpp or Ollama uses")
    return import_gguf(inspect_gguf(path), output, dtype=dtype, overwrite=overwrite)


def set_stop_tokens(model, tokenizer) -> None:
    """An instruct model's turns end on `<|im_end|>`; generation must stop there, not run on to `<|endoftext|>`."""
    generation = model.generation_config
    vocab = tokenizer.get_vocab()
    ends = [tokenizer.eos_token_id]
    if tokenizer.chat_template and IM_END in tokenizer.chat_template and IM_END in vocab:
        ends.insert(0, vocab[IM_END])
    if END_OF_TEXT in vocab:
        ends.append(vocab[END_OF_TEXT])
    generation.eos_token_id = list(dict.fromkeys(i for i in ends if i is not None))
    generation.bos_token_id = tokenizer.bos_token_id
    generation.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ends[0]


def cache_root() -> Path:
    base = os.environ.get("SMOLALIGN_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "smolalign")
    return Path(base).expanduser()


def as_model_directory(path: Path) -> tuple[Path, GGUFSource]:
    """The Hugging Face directory a GGUF file is loaded from: imported once into the cache (by sha256)."""
    import fcntl

    source = inspect_gguf(path)
    target = cache_root() / "gguf" / f"{source.sha256[:20]}-{path.stem}"
    target.parent.mkdir(parents=True, exist_ok=True)
    # several processes of one launch may ask at once: one imports, the others wait and then read its result
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").is_file():
            import_gguf(source, target, dtype="float32", overwrite=False)
    return target, source


def resolve_model(name: str | None, gguf_file: str | None = None) -> tuple[str | None, GGUFSource | None]:
    """The name to load (a GGUF file replaced by its imported directory), and the GGUF source when there is one."""
    path = find_gguf(name, gguf_file)
    if path is None:
        return name, None
    directory, source = as_model_directory(path)
    return str(directory), source
