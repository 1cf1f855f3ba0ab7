"""`smolalign chat`: `--prompt` answers once and stops at the stop token, generation settings take effect, the
slash commands change the conversation, and the interactive loop works in a real pseudo-terminal."""

import os
import select
import subprocess
import sys
import time

import pytest

from smolalign.chat import EXIT, ChatSession, run_chat
from smolalign.errors import UsageError

from .conftest import DEBUG_DIR, REPO, assert_user_error, run_cli
from .known_model import ANSWERS_CAT, bigram_model


@pytest.fixture(scope="module")
def cat_model(tmp_path_factory):
    """Always answers "cat", then <|im_end|>; past the stop token it would go on with "dog dog ..."."""
    return bigram_model(DEBUG_DIR / "tokenizer", tmp_path_factory.mktemp("known") / "cat", ANSWERS_CAT)


def test_prompt_answers_once_and_stops_at_the_stop_token(cat_model, capsys):
    assert run_chat(str(cat_model), prompt="Name an animal", temperature=0) == "cat"
    assert capsys.readouterr().out == "cat\n", "only the answer on stdout"


def test_a_base_model_stops_at_the_chat_end_of_turn(tmp_path, capsys):
    """A base model's eos is <|endoftext|>; chatting through the template it must still stop at <|im_end|>."""
    base = bigram_model(DEBUG_DIR / "tokenizer", tmp_path / "base", ANSWERS_CAT, eos="<|endoftext|>")
    assert run_chat(str(base), prompt="Name an animal", temperature=0) == "cat"


def test_generation_settings_take_effect(tmp_path, capsys):
    endless = bigram_model(DEBUG_DIR / "tokenizer", tmp_path / "endless", {"Ċ": "dog", "dog": "dog"})
    assert run_chat(str(endless), prompt="hi", temperature=0, max_new_tokens=3) == "dogdogdog"

    # logit 3 on "cat": greedy always picks it; at temperature 5 it has p < 0.004 against 511 other tokens
    soft = bigram_model(DEBUG_DIR / "tokenizer", tmp_path / "soft", ANSWERS_CAT, scale=3.0)
    assert run_chat(str(soft), prompt="hi", temperature=0, max_new_tokens=4) == "cat"
    sampled = run_chat(str(soft), prompt="hi", temperature=5.0, top_p=1.0, max_new_tokens=4, seed=1)
    assert sampled != "cat"
    assert run_chat(str(soft), prompt="hi", temperature=5.0, top_p=1.0, max_new_tokens=4, seed=1) == sampled

    for bad, message in ((dict(max_new_tokens=0), "--max-new-tokens"), (dict(temperature=-1), "--temperature"),
                         (dict(top_p=0), "--top-p"), (dict(prompt=" "), "--prompt is empty")):
        with pytest.raises(UsageError, match=message):
            run_chat(str(soft), **{"prompt": "hi", **bad})


def test_slash_commands_change_the_conversation():
    session = ChatSession()
    assert session.command("hello /reset") is None, "a message, not a command"
    session.add("hello", "cat")
    assert session.messages("next") == [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "cat"},
                                        {"role": "user", "content": "next"}]
    assert "cleared" in session.command("/system Answer with one word.")
    assert session.messages() == [{"role": "system", "content": "Answer with one word."}]
    session.add("hello", "cat")
    assert "cleared" in session.command("/reset")
    assert session.messages() == [{"role": "system", "content": "Answer with one word."}], "system prompt kept"
    assert "unknown command" in session.command("/frobnicate")
    assert session.command("/exit") is EXIT


def _read_until(fd: int, pattern: str, seen: list[str], timeout: float = 900) -> str:
    """Read the terminal until `pattern` shows up in what was printed since the last match."""
    deadline = time.monotonic() + timeout
    buffer = ""
    while pattern not in buffer:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} in the terminal; it shows: {''.join(seen) + buffer!r}")
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                buffer += os.read(fd, 4096).decode(errors="replace")
            except OSError:  # the child closed the terminal
                break
    seen.append(buffer)
    return buffer


def test_interactive_loop_in_a_pseudo_terminal(cat_model, tmp_path):
    """The real loop on a real terminal: prompt, streamed reply, /system, /reset, /exit."""
    code = f"from smolalign.chat import run_chat; run_chat({str(cat_model)!r}, temperature=0)"
    primary, secondary = os.openpty()
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-c", code], stdin=secondary, stdout=secondary, stderr=stderr,
                                   cwd=REPO, close_fds=True)
    os.close(secondary)
    seen: list[str] = []
    try:
        _read_until(primary, "> ", seen)
        os.write(primary, b"Name an animal\n")
        assert "cat" in _read_until(primary, "\n> ", seen)
        os.write(primary, b"/system Answer with one word.\n")
        assert "system prompt set" in _read_until(primary, "\n> ", seen)
        os.write(primary, b"And another?\n")
        assert "cat" in _read_until(primary, "\n> ", seen)
        os.write(primary, b"/reset\n")
        assert "conversation cleared" in _read_until(primary, "\n> ", seen)
        os.write(primary, b"/exit\n")
        assert process.wait(timeout=900) == 0, log.read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(primary)
    transcript = "".join(seen)
    assert "dog" not in transcript, "every reply stopped at <|im_end|>"


def test_cli_chat_prompt(cat_model):
    result = run_cli("chat", cat_model, "--prompt", "Name an animal", "--temperature", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "cat\n"
    assert_user_error(run_cli("chat", cat_model, "--prompt", "hi", "--top-p", "2"))
