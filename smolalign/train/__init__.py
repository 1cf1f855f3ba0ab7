"""Training commands, one file each, read top to bottom (sft.py, dpo.py, pretrain/command.py), over the steps a run
takes (run.py) and the pieces they share: speed choices (speed.py), the global batch (batch.py), memory shapes
(shape.py), run sizes (size.py), packing, templates, checkpoints, callbacks, report, merge. Imports config, data,
model and leaves only; never plan/ (which reads the commands' facts)."""
