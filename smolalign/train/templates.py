"""The chat template a training run uses, and the tokens it needs, so that a base model of any family can be
fine-tuned (SFT) and later chatted with, evaluated and exported through the template written into its output.

- The model's own template stays. Assistant-only loss needs `{% generation %}` markers around each assistant turn,
  its end-of-turn token inside: a template that renders as SmolLM2's ChatML becomes our marked copy; another gets
  TRL's training twin where TRL ships one (`trl/chat_templates/*_training.jinja`, `get_training_chat_template`).
- A model with no template gets SmolLM2's ChatML one, the paper's format. `<|im_start|>` and `<|im_end|>` become
  special tokens where the tokenizer lacks them, and the embeddings grow to hold them (new rows start at the mean of
  the old ones: transformers' `resize_token_embeddings`).
- `training.chat_template_path` (TRL's `SFTConfig` field, with TRL's meaning) picks another template: a `.jinja`
  file, or a tokenizer folder or hub id whose template and added tokens are cloned (`trl.clone_chat_template`).
  The word `chatml` names the default.

It is all applied here, before the trainer is built, so that the checks, the data report and the saved output see
one template; the caller then clears `chat_template_path`, or TRL would apply the unmarked file over it again.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..model.chat_template import IM_END, IM_START, SMOLLM2_CHAT_TEMPLATE

CHATML = "chatml"
GIVES_CHATML = ("the model has no chat template: sft gives it SmolLM2's ChatML template (<|im_start|>role ... "
                "<|im_end|>), adding those two as special tokens where the tokenizer lacks them and resizing the "
                "embeddings; both are written into the output (training.chat_template_path picks another)")

_PROBE = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "Q"},
    {"role": "assistant", "content": "A"},
    {"role": "user", "content": "Q2"},
    {"role": "assistant", "content": "A2"},
]


def _has_chatml_tokens(tokenizer) -> bool:
    vocab = tokenizer.get_vocab()
    return IM_START in vocab and IM_END in vocab


def _renders_like_smollm2(tokenizer) -> bool:
    try:
        theirs = tokenizer.apply_chat_template(_PROBE, tokenize=False)
        ours = tokenizer.apply_chat_template(_PROBE, tokenize=False, chat_template=SMOLLM2_CHAT_TEMPLATE)
    except Exception:  # a template that cannot render the probe is not ChatML
        return False
    return theirs == ours


def give_chatml(tokenizer, model=None) -> str:
    """SmolLM2's template, its two tokens added where missing and the embeddings resized to hold them."""
    missing = [token for token in (IM_START, IM_END) if token not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    resized = ""
    if model is not None and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
        resized = f", embeddings resized to {len(tokenizer):,} rows"
    added = f", added {' and '.join(missing)}" if missing else ""
    return f"gave the model SmolLM2's ChatML template (it had none{added}{resized})"


def template_from_path(tokenizer, path: str, model=None) -> str:
    """`training.chat_template_path` as TRL reads it: a .jinja file's text, or a tokenizer's template and tokens."""
    if path.endswith((".jinja", ".j2")):
        file = Path(path).expanduser()
        if not file.is_file():
            raise UsageError(f"training.chat_template_path={path!r} does not exist: give a .jinja file, a tokenizer "
                             f"folder, a hub id, or `chatml`")
        tokenizer.chat_template = file.read_text(encoding="utf-8")
        return f"used the chat template in {path}"
    if model is None:  # sizing the data only (`plan`): the template is all that matters
        from transformers import AutoTokenizer

        tokenizer.chat_template = AutoTokenizer.from_pretrained(path).get_chat_template()
        return f"used the chat template of {path}"
    from trl.chat_template_utils import clone_chat_template

    before = len(tokenizer)
    clone_chat_template(model, tokenizer, path)
    return f"cloned the chat template of {path} ({len(tokenizer) - before} tokens added)"


def mark_generation(tokenizer) -> str:
    """Generation markers for assistant-only loss: our ChatML, or TRL's training twin of a template it knows."""
    from trl.chat_template_utils import get_training_chat_template

    if _has_chatml_tokens(tokenizer) and _renders_like_smollm2(tokenizer):
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
        return "replaced the ChatML template by the same one with generation markers"
    try:
        patched = get_training_chat_template(tokenizer)
    except ValueError as error:  # TRL ships no training version of this template
        raise UsageError(
            "the chat template has no {% generation %} markers and TRL ships no training version of it, so "
            "assistant-only loss cannot find the assistant's tokens: set training.assistant_only_loss=false, or "
            "give a template with the markers in training.chat_template_path (a .jinja file, or `chatml`)"
        ) from error
    if patched:
        tokenizer.chat_template = patched
    return "used TRL's training version of the chat template"


def prepare_chat_tokenizer(tokenizer, assistant_only_loss: bool = True, chat_template_path: str | None = None,
                           model=None) -> str:
    """Attach, replace or mark the chat template as needed (`model`, when given, gets any new embedding rows);
    returns a note of what was done, for the run log."""
    from trl.chat_template_utils import has_generation_markers

    notes = []
    if chat_template_path and chat_template_path != CHATML:
        notes.append(template_from_path(tokenizer, chat_template_path, model))
    elif chat_template_path == CHATML or not tokenizer.chat_template:
        notes.append(give_chatml(tokenizer, model))
    if assistant_only_loss and not has_generation_markers(tokenizer.chat_template):
        notes.append(mark_generation(tokenizer))
    if IM_END in tokenizer.get_vocab() and IM_END in tokenizer.chat_template:
        tokenizer.eos_token = IM_END  # chat models stop on <|im_end|>, as SmolLM2-Instruct
    if tokenizer.pad_token is None:
        raise UsageError("the tokenizer has no pad token: set one (e.g. <|endoftext|>) in its tokenizer_config.json")
    if assistant_only_loss:
        from trl.chat_template_utils import is_chat_template_stop_token_trained

        if not is_chat_template_stop_token_trained(tokenizer):
            raise UsageError(
                "the chat template leaves the assistant's end-of-turn token out of the labels, so the model would "
                "never learn to stop: put it inside {% generation %}...{% endgeneration %}, or set "
                "training.assistant_only_loss=false"
            )
    return "; ".join(notes) or "kept the tokenizer's chat template"


def set_generation_stop(model, tokenizer) -> None:
    """The saved generation_config stops on the chat end-of-turn token."""
    model.config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        model.generation_config.bos_token_id = tokenizer.bos_token_id


# ---------------------------------------------------------------- what --print-config and the first lines say


def template_note(recipe) -> str | None:
    """The line --print-config and the run's first lines give when sft will give the model a template."""
    from ..model.info import has_chat_template

    path = recipe.training.get("chat_template_path")
    if path and path != CHATML:
        return f"chat template: training.chat_template_path={path} (TRL's meaning: a .jinja file or a tokenizer's)"
    model = recipe.model
    source = model.tokenizer or model.name_or_path
    if path == CHATML or has_chat_template(source, model.gguf_file if source == model.name_or_path else None) is False:
        return GIVES_CHATML
    return None
