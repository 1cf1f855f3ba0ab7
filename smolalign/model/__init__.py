"""The one model definition and loader: presets, building (build.py), loading a preset, hub id or local directory
(load.py), writing one (write.py), `model info` (info.py), GGUF in (gguf.py) and out (gguf_export.py), tokenizer,
chat template. Imports only leaves."""
