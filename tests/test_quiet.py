"""`quiet_output` silences the known per-step noise, and only it: stderr of the real calls, with and without."""

import os
import subprocess
import sys

import pytest

from .conftest import DEBUG_DIR

# Each noisy call is the real one; each "real" line is a warning of the same kind that must still show.
SCRIPT = f"""
import sys, tempfile, warnings
import torch, datasets
from transformers import AutoTokenizer
from transformers.trainer import logger as trainer_logger
from transformers.utils import logging as hf_logging
from smolalign.model.build import build_model
from smolalign.quiet import quiet_output

# the libraries' defaults, whatever this process inherited: the baseline is loud on purpose
hf_logging.set_verbosity_warning()
hf_logging.enable_progress_bar()
if sys.argv[1] == "quiet":
    quiet_output()
    quiet_output()  # a second call changes nothing
out = tempfile.mkdtemp()
tokenizer = AutoTokenizer.from_pretrained({str(DEBUG_DIR / "tokenizer")!r})
model = build_model("tiny", tokenizer)

datasets.Dataset.from_dict({{"x": list(range(50))}}).map(lambda row: row, desc="Per-step map")
model.save_pretrained(out)                                    # Writing model shards
list(torch.utils.data.DataLoader(list(range(4)), pin_memory=True))
model.gradient_checkpointing_enable()
model.train()
model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=True)    # caching vs gradient checkpointing

# a resume of a tied model: the Trainer's own check of what a checkpoint lacked
from transformers import Trainer, TrainingArguments
trainer = Trainer(model=model, args=TrainingArguments(output_dir=out, report_to=[], use_cpu=True))
state = {{k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}}
trainer._issue_warnings_after_load(model.load_state_dict(state, strict=False))

# real problems stay visible
trainer_logger.warning("There were missing keys in the checkpoint model loaded: ['model.norm.weight'].")
warnings.warn("a real warning")
from tqdm import tqdm
for _ in tqdm(range(3), desc="Another bar"):
    pass
"""

NOISE = ["Per-step map", "Writing model shards", "pin_memory", "incompatible with gradient checkpointing",
         "['lm_head.weight']"]
QUIETING = {"TRANSFORMERS_VERBOSITY", "TRANSFORMERS_NO_ADVISORY_WARNINGS", "HF_HUB_DISABLE_PROGRESS_BARS",
            "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE", "PYTHONWARNINGS", "DATASETS_VERBOSITY"}
REAL = ["['model.norm.weight']", "a real warning", "Another bar"]


@pytest.fixture(scope="module")
def stderr():
    def run(mode):
        # settings that quiet the libraries are left out: each run starts from their defaults
        inherited = {k: v for k, v in os.environ.items() if k not in QUIETING}
        done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=1800,
                              env=inherited)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stderr
    return {mode: run(mode) for mode in ("loud", "quiet")}


@pytest.mark.parametrize("line", NOISE)
def test_noise_is_silenced(stderr, line):
    assert line in stderr["loud"], "the call must really make this noise"
    assert line not in stderr["quiet"]


@pytest.mark.parametrize("line", REAL)
def test_real_warnings_still_show(stderr, line):
    assert line in stderr["quiet"]


def test_data_bars_come_back_for_a_large_set():
    import datasets

    from smolalign.quiet import LONG_PREPARATION_ROWS, show_data_progress

    try:
        datasets.disable_progress_bars()  # as quiet_output leaves them (not called here: it filters process-wide)
        show_data_progress(LONG_PREPARATION_ROWS - 1)
        assert not datasets.is_progress_bar_enabled(), "a small set: no per-step bars"
        show_data_progress(LONG_PREPARATION_ROWS)
        assert datasets.is_progress_bar_enabled(), "a large set: its preparation shows progress"
    finally:
        datasets.enable_progress_bars()
