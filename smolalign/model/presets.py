"""The SmolLM2 architecture presets (paper table; see recipes/README.md) and the `tiny` CPU preset.

Plain data, no torch: the CLI can list presets without importing anything heavy.
Every preset is a Llama decoder (transformers' LlamaForCausalLM) with tied embeddings, SwiGLU and RMSNorm.
The context and RoPE values are the *pretraining* ones (2,048 tokens, theta 10,000); context extension to
8,192 tokens raises them later, as SmolLM2 did.
"""

from __future__ import annotations

SMOLLM2_VOCAB_SIZE = 49_152

_SHARED = dict(
    vocab_size=SMOLLM2_VOCAB_SIZE,
    hidden_act="silu",
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    max_position_embeddings=2048,
    rope_theta=10_000.0,
    attention_bias=False,
    mlp_bias=False,
)

PRESETS: dict[str, dict] = {
    "smollm2-135m": dict(
        _SHARED, num_hidden_layers=30, hidden_size=576, num_attention_heads=9, num_key_value_heads=3,
        intermediate_size=1536, initializer_range=0.0417,
    ),
    "smollm2-360m": dict(
        _SHARED, num_hidden_layers=32, hidden_size=960, num_attention_heads=15, num_key_value_heads=5,
        intermediate_size=2560, initializer_range=0.03227,
    ),
    "smollm2-1.7b": dict(
        _SHARED, num_hidden_layers=24, hidden_size=2048, num_attention_heads=32, num_key_value_heads=32,
        intermediate_size=8192, initializer_range=0.02,
    ),
    # For CPU: learns the shipped task set in minutes; same architecture, so every code path is the real one.
    "tiny": dict(
        _SHARED, num_hidden_layers=4, hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=384, initializer_range=0.02,
    ),
}

# Parameter counts of the released checkpoints; tests check the definition reproduces them exactly.
EXPECTED_PARAMETERS = {
    "smollm2-135m": 134_515_008,
    "smollm2-360m": 361_821_120,
    "smollm2-1.7b": 1_711_376_384,
}
