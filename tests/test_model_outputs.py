"""Nothing lost by the one-shot writers (`model init`, `model import`, `tokenizer train`): `--overwrite` replaces
smolalign's own output; an overwrite that fails after its checks, or is interrupted (SIGINT, kill -9), leaves the old
output byte for byte; a file where a folder belongs, a folder where a file belongs and a binary corpus are one line.
(`model export` writes a file; its cases are in test_export.py.)"""

from __future__ import annotations

import os
import signal

import pytest

from smolalign.errors import UsageError

from .conftest import tree_digest
from .test_export import interrupt


def leftovers(folder) -> list[str]:
    """Staging folders an interrupted writer left beside its output."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def test_overwrite_replaces_smolaligns_own_outputs(tokenizer_dir, corpus_file, tmp_path):
    from smolalign.model.tokenizer import train_tokenizer
    from smolalign.model.write import init_model

    model = tmp_path / "model"
    init_model("tiny", str(tokenizer_dir), str(model), seed=0)
    first = tree_digest(model)
    with pytest.raises(UsageError, match="is not empty: pass --overwrite to replace it, or choose another") as error:
        init_model("tiny", str(tokenizer_dir), str(model), seed=1)
    assert "--resume" not in str(error.value), "model init has no --resume"
    init_model("tiny", str(tokenizer_dir), str(model), seed=1, overwrite=True)
    assert tree_digest(model)["model.safetensors"] != first["model.safetensors"] and (model / ".smolalign").is_file()

    tokenizer = tmp_path / "tok"
    train_tokenizer([str(corpus_file)], 300, str(tokenizer))
    with pytest.raises(UsageError, match="is not empty") as error:
        train_tokenizer([str(corpus_file)], 320, str(tokenizer))
    assert "--resume" not in str(error.value)
    assert len(train_tokenizer([str(corpus_file)], 320, str(tokenizer), overwrite=True)) == 320


def test_a_failing_overwrite_keeps_the_old_output(tokenizer_dir, corpus_file, tiny_model_dir, tmp_path, monkeypatch):
    """Injected fault: saving fails (as a full disk would) after every check has passed."""
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from smolalign.model.gguf import import_file
    from smolalign.model.gguf_export import export_gguf
    from smolalign.model.tokenizer import train_tokenizer
    from smolalign.model.write import init_model

    gguf_file = tmp_path / "tiny.gguf"
    export_gguf(str(tiny_model_dir), str(gguf_file), dtype="f32")
    model, imported, tokenizer = tmp_path / "model", tmp_path / "imported", tmp_path / "tok"
    init_model("tiny", str(tokenizer_dir), str(model))
    import_file(str(gguf_file), str(imported))
    train_tokenizer([str(corpus_file)], 300, str(tokenizer))
    before = {folder: tree_digest(folder) for folder in (model, imported, tokenizer)}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full_disk)
    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", full_disk)
    for write in (lambda: init_model("tiny", str(tokenizer_dir), str(model), seed=5, overwrite=True),
                  lambda: import_file(str(gguf_file), str(imported), overwrite=True),
                  lambda: train_tokenizer([str(corpus_file)], 320, str(tokenizer), overwrite=True)):
        with pytest.raises(OSError, match="No space left"):
            write()
    for folder, files in before.items():
        assert tree_digest(folder) == files and not leftovers(folder), folder


def test_paths_of_the_wrong_kind_are_named(tmp_path, tokenizer_dir, corpus_file):
    from click.testing import CliRunner

    from smolalign.cli import main

    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(4096))
    (tmp_path / "folder").mkdir()
    cases = [
        (["model", "init", "--preset", "tiny", "--tokenizer", tokenizer_dir, "--output", a_file], "is a file"),
        (["tokenizer", "train", "--corpus", corpus_file, "--vocab-size", 300, "--output", a_file], "is a file"),
        (["model", "import", tmp_path / "folder", "--output", tmp_path / "m"], "is a folder with no .gguf"),
        (["tokenizer", "train", "--corpus", tmp_path / "folder", "--vocab-size", 300, "--output", tmp_path / "t"],
         "is a folder: pass the text files in it"),
        (["tokenizer", "train", "--corpus", noise, "--vocab-size", 300, "--output", tmp_path / "t"], "is not text"),
        (["model", "info", a_file], "is a file but not a GGUF file"),
        (["eval", a_file, "--tasks", "ifeval"], "is a file but not a GGUF file"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, [str(a) for a in args])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], (args, result.output)
    assert a_file.read_text() == "keep me" and not (tmp_path / "m").exists() and not (tmp_path / "t").exists()


def cpu_seconds(pid: int) -> float:
    """CPU time a running process has used (Linux /proc): its imports are done once it has used a few seconds."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "kill-9"])
def test_an_interrupted_overwrite_keeps_the_old_output(sig, tokenizer_dir, corpus_file, real_gguf, tmp_path):
    """Each writer interrupted while it writes its new output (model init of the 135M preset: while it saves; import
    of the real GGUF: while it loads or saves; tokenizer train: while BPE trains on a large corpus)."""
    import random

    from smolalign.model.tokenizer import train_tokenizer
    from smolalign.model.write import init_model

    model, imported, tokenizer = tmp_path / "model", tmp_path / "imported", tmp_path / "tok"
    init_model("tiny", str(tokenizer_dir), str(model))
    imported.mkdir()
    (imported / ".smolalign").write_text("written by smolalign\n")  # a stand-in for an earlier import: ours
    (imported / "config.json").write_text("{}")
    train_tokenizer([str(corpus_file)], 300, str(tokenizer))
    rng = random.Random(0)
    big = tmp_path / "big.txt"  # many distinct words: seconds of BPE training
    big.write_text("".join(" ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
                                    for _ in range(12)) + "\n" for _ in range(80_000)))
    runs = [
        (model, ["model", "init", "--preset", "smollm2-135m", "--tokenizer", tokenizer_dir, "--output", model],
         lambda process: bool(leftovers(model))),
        (imported, ["model", "import", real_gguf, "--output", imported],
         lambda process: bool(leftovers(imported)) or cpu_seconds(process.pid) > 8),
        (tokenizer, ["tokenizer", "train", "--corpus", big, "--vocab-size", 4000, "--output", tokenizer],
         lambda process: cpu_seconds(process.pid) > 6),
    ]
    for folder, args, watch in runs:
        before = tree_digest(folder)
        result = interrupt([*args, "--overwrite"], watch, sig)
        assert result.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), result.stderr[-2000:]
        assert tree_digest(folder) == before, folder
        if sig == signal.SIGINT:
            assert not leftovers(folder) and "interrupted" in result.stderr, "ctrl-C removes its own partial work"
