"""`smolalign eval`: the command (run.py), its metrics (loss, perplexity, exact match, preference accuracy; also
used by `demo` and reports), built-in tasks (tasks/: IFEval offline; answers.py, generate.py, responses.py, remote.py for a served model) and the
lm-eval hand-off (harness.py). Imports data, model, leaves and gen/constraints' IFEval checkers (a shared leaf)."""
