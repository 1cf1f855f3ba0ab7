"""`smolalign eval`: the command (run.py), its metrics (loss, perplexity, exact match, preference accuracy; also
used by `demo` and reports) and the lm-eval hand-off (harness.py). Imports data, model and leaves only."""
