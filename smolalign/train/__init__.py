"""Training commands (sft.py, dpo.py, pretrain/) and the run machinery they share (run.py: output directory, lock,
resume, trainer, callbacks, report; templates, packing, merge). Imports config, data, model and leaves only."""
