"""Make a tokenizer ready for chat training: a template with `{% generation %}` markers that puts each
assistant turn's end-of-turn token inside the labels, and `<|im_end|>` as the token generation stops on."""

from __future__ import annotations

from ..model.chat_template import IM_END, IM_START, SMOLLM2_CHAT_TEMPLATE
from ..errors import UsageError

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


def prepare_chat_tokenizer(tokenizer, assistant_only_loss: bool = True):
    """Attach or patch the chat template as needed; returns a note of what was done (for the run log)."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    note = "kept the tokenizer's chat template"
    template = tokenizer.chat_template
    if not template:
        if not _has_chatml_tokens(tokenizer):
            raise UsageError(
                "the tokenizer has no chat template and no <|im_start|>/<|im_end|> tokens: train one with "
                "`smolalign tokenizer train`, or use a tokenizer that ships a chat template"
            )
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
        note = "attached the SmolLM2 ChatML template (the tokenizer had none)"
    elif assistant_only_loss and not has_generation_markers(template):
        if _has_chatml_tokens(tokenizer) and _renders_like_smollm2(tokenizer):
            tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
            note = "replaced the ChatML template by the same one with generation markers"
        else:
            try:
                patched = get_training_chat_template(tokenizer)
            except Exception as error:
                raise UsageError(
                    "the chat template has no {% generation %} markers and TRL cannot patch it: add the markers "
                    "around assistant content, or set training.assistant_only_loss=false"
                ) from error
            if patched:
                tokenizer.chat_template = patched
                note = "used TRL's training version of the chat template"
    if IM_END in tokenizer.get_vocab() and IM_END in tokenizer.chat_template:
        tokenizer.eos_token = IM_END  # chat models stop on <|im_end|>, as SmolLM2-Instruct
    if tokenizer.pad_token is None:
        raise UsageError("the tokenizer has no pad token: set one (e.g. <|endoftext|>) in its tokenizer_config.json")
    if assistant_only_loss:
        from trl.chat_template_utils import is_chat_template_stop_token_trained

        if not is_chat_template_stop_token_trained(tokenizer):
            raise UsageError(
                "the chat template leaves the assistant's end-of-turn token out of the labels, so the model would "
                "never learn to stop: put it inside {% generation %}...{% endgeneration %}"
            )
    return note


def set_generation_stop(model, tokenizer) -> None:
    """The saved generation_config stops on the chat end-of-turn token."""
    model.config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        model.generation_config.bos_token_id = tokenizer.bos_token_id
