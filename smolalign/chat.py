"""`smolalign chat MODEL`: talk to a model in the terminal, the quickest check that a run made a chat model.

The conversation goes through the model's own chat template (what SFT trained on), replies stream token by
token as they are generated, and generation stops on the model's stop tokens (its generation config's, its
end-of-sequence, and ChatML's <|im_end|>), the same set `smolalign eval` stops on. `--prompt` answers once and
prints only the answer on stdout, for scripts. Interactive commands: /reset, /system TEXT, /exit.

A model with no chat template (a base model before `smolalign sft`), or any model with `--raw`, continues the text
as it is, as llama.cpp's `llama-cli` does outside conversation mode: each message is a prompt of its own, and the
note saying so goes to stderr. Whether the model has a template is read from its files (a GGUF file's metadata)
before its weights are loaded.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from .errors import UsageError

HELP = "/reset clears the conversation, /system TEXT sets the system prompt (and clears), /exit quits"
EXIT = object()  # what ChatSession.command returns for /exit
NO_TEMPLATE = ("note: model '{model}' has no chat template: continuing each prompt as plain text (as llama-cli does "
               "outside conversation mode); `smolalign sft` gives it one")


@dataclass
class ChatSession:
    """The conversation so far and the slash commands that change it; no model, no terminal."""

    system: str | None = None
    turns: list[dict] = field(default_factory=list)

    def messages(self, user: str | None = None) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        tail = [{"role": "user", "content": user}] if user is not None else []
        return head + self.turns + tail

    def command(self, line: str):
        """Apply a slash command: returns the note to print (EXIT for /exit), or None for a message to the model."""
        if not line.startswith("/"):
            return None
        name, _, argument = line[1:].partition(" ")
        if name in ("exit", "quit"):
            return EXIT
        if name == "reset":
            self.turns.clear()
            return "(conversation cleared)"
        if name == "system":
            self.system = argument.strip() or None
            self.turns.clear()
            return f"(system prompt {'set' if self.system else 'removed'}; conversation cleared)"
        return f"(unknown command /{name}: {HELP})"

    def add(self, user: str, reply: str) -> None:
        self.turns += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]

    def drop_oldest(self) -> bool:
        """Forget the oldest exchange to make room in the context; False when there is none left."""
        if len(self.turns) < 2:
            return False
        del self.turns[:2]
        return True


def _streamer(tokenizer, write):
    """transformers' TextStreamer (it holds back partial words), writing where we say and flushing each piece."""
    from transformers import TextStreamer

    class Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False):
            write(text)

    return Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def _prompt_ids(model, tokenizer, session: ChatSession, user: str, max_new_tokens: int, raw: bool = False):
    """The templated conversation, oldest exchanges dropped until the reply fits in the model's context; with `raw`,
    the text alone (with the bos token the tokenizer adds, as in pretraining)."""
    context = getattr(model.config, "max_position_embeddings", None)
    if raw:
        ids = tokenizer(user, return_tensors="pt")["input_ids"]
    else:
        while True:
            ids = tokenizer.apply_chat_template(session.messages(user), add_generation_prompt=True,
                                                return_dict=True, return_tensors="pt")["input_ids"]
            if context is None or ids.shape[1] + max_new_tokens <= context or not session.drop_oldest():
                break
    if context is not None and ids.shape[1] >= context:
        raise UsageError(f"the message is {ids.shape[1]} tokens, the model's context holds {context}: shorten it")
    return ids


def reply(model, tokenizer, session: ChatSession, user: str, settings: dict, write) -> str:
    """Generate the assistant's answer to `user` (with settings["raw"]: the text's continuation), streaming it
    through `write`; returns the whole answer."""
    import torch

    from .model.chat_template import stop_token_ids

    stops = stop_token_ids(model, tokenizer)
    ids = _prompt_ids(model, tokenizer, session, user, settings["max_new_tokens"], settings.get("raw", False))
    ids = ids.to(model.device)
    sampling = settings["temperature"] > 0
    extra = {"temperature": settings["temperature"], "top_p": settings["top_p"]} if sampling else \
        {"temperature": None, "top_p": None, "top_k": None}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    with torch.no_grad():
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=sampling,
                                max_new_tokens=settings["max_new_tokens"], eos_token_id=stops, pad_token_id=pad,
                                streamer=_streamer(tokenizer, write), **extra)
    new = output[0, ids.shape[1]:].tolist()
    for position, token in enumerate(new):
        if token in stops:
            new = new[:position]
            break
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def _check_settings(max_new_tokens: int, temperature: float, top_p: float) -> None:
    if max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens={max_new_tokens} must be at least 1")
    if temperature < 0:
        raise UsageError(f"--temperature={temperature} must be 0 (greedy) or more")
    if not 0 < top_p <= 1:
        raise UsageError(f"--top-p={top_p} must be in (0, 1]")


def run_chat(model: str, prompt: str | None = None, system: str | None = None, max_new_tokens: int = 256,
             temperature: float = 0.2, top_p: float = 0.9, seed: int | None = None, raw: bool = False,
             stdin=None, stdout=None) -> str | None:
    """Chat with MODEL. With `prompt`: answer once, print only the answer, return it. Without: a loop on stdin."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    _check_settings(max_new_tokens, temperature, top_p)
    if prompt == "-":
        prompt = stdin.read()
    if prompt is not None and not prompt.strip():
        raise UsageError("--prompt is empty: give the message to answer")
    from .model.info import has_chat_template
    from .model.load import check_model_source, load_model

    check_model_source(model)
    templated = has_chat_template(model)  # from the files: before a GGUF file is dequantized
    if not raw and templated is False:
        print(NO_TEMPLATE.format(model=model), file=sys.stderr, flush=True)
    if prompt is None:
        print(f"loading {model} ...", file=sys.stderr, flush=True)
    lm, tokenizer, placement = load_model(name_or_path=model)
    lm.to(placement.device)
    lm.eval()
    if not raw and not tokenizer.chat_template:
        if templated is not False:  # a hub model: known only now
            print(NO_TEMPLATE.format(model=model), file=sys.stderr, flush=True)
        raw = True
    if seed is not None:
        import torch

        torch.manual_seed(seed)
    settings = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "raw": raw}

    def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    session = ChatSession(system=system)
    if prompt is not None:
        answer = reply(lm, tokenizer, session, prompt, settings, write)
        write("\n")
        return answer
    _loop(lm, tokenizer, session, settings, stdin, write)
    return None


def _read(stdin, write) -> str | None:
    """One line from the user; None at end of input. On a terminal, `input()` with the readline module gives
    line editing and history (without it, Python would print the prompt on stderr)."""
    if stdin is sys.stdin and stdin.isatty():
        try:
            import readline  # noqa: F401
        except ImportError:  # not on every platform; input() still works
            pass
        try:
            return input("> ")
        except EOFError:
            return None
    write("> ")
    line = stdin.readline()
    return line.rstrip("\n") if line else None


def _loop(model, tokenizer, session: ChatSession, settings: dict, stdin, write) -> None:
    write(f"chat: {HELP}\n")
    while True:
        try:
            line = _read(stdin, write)
        except KeyboardInterrupt:  # Ctrl-C at the prompt leaves, as /exit does
            line = None
        if line is None:
            write("\n")
            return
        line = line.strip()
        if not line:
            continue
        note = session.command(line)
        if note is EXIT:
            return
        if note is not None:
            write(note + "\n")
            continue
        try:
            answer = reply(model, tokenizer, session, line, settings, write)
        except KeyboardInterrupt:  # Ctrl-C during a reply stops that reply only
            write("\n(stopped)\n")
            continue
        except UsageError as error:
            write(f"({error})\n")
            continue
        write("\n")
        if not settings.get("raw"):  # plain text: each prompt stands alone
            session.add(line, answer)
