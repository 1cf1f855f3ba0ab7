"""Training commands (sft, dpo) and the run machinery they share: output directories, resume, progress, reports."""
