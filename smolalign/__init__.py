"""smolalign: the SmolLM2 recipe, from raw text to an aligned chat model, on TRL and distilabel.

Imports point down: cli.py and demo/ > the commands (train/, gen/, eval/, chat.py) > config/, data/, model/ >
leaves (errors, hub, outputs, resources, ...). A command never imports another (tests/test_layout.py checks)."""

__version__ = "0.1.0"
