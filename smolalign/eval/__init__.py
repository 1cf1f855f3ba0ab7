"""`smolalign eval`: the command (run.py), its metrics (loss, perplexity, exact match, preference accuracy; also
used by `demo` and reports), built-in tasks (tasks/, one file each: IFEval offline) answered by answers.py through
continuous batching (generate.py) or a server (remote.py) into a resumable record (responses.py), and the lm-eval
hand-off (harness.py). Imports data, model, leaves and gen/constraints' IFEval checkers (a shared leaf)."""
