"""SmolTalk's quality passes over generated rows: labels from a judge LLM (difficulty, input quality, task category),
safety, a reward score, embeddings of the first user turn; then thresholds, near-duplicate removal and the rejected
rows. One module per job: spec (the spec's sections), labels (prompts and parsing), passes (which passes a spec
has and their committed records), steps (the distilabel steps), filters, dedup, checks, card, refilter.

Imports gen's light modules and leaves; distilabel, transformers, faiss and datasketch load only when a pass runs.
"""
