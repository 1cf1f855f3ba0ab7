"""smolalign: the SmolLM2 recipe, from raw text to an aligned chat model, on TRL and distilabel."""

__version__ = "0.1.0"
