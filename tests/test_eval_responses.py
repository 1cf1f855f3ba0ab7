"""The resumable record of IFEval answers (`ifeval-responses.jsonl`) against what a kill, a full disk or a hand edit
leaves in it: a line with binary bytes, without `response` or with a null one is reported and its prompt asked
again; a header that is not eval's is refused (`--overwrite` starts over); a directory at its path is refused.
Each refusal: exit 2, one `error:` line, nothing written."""

from __future__ import annotations

import json

import pytest

from .conftest import DEBUG_DIR, assert_user_error, run_cli, tree_digest
from .known_model import ANSWERS_CAT, bigram_model


@pytest.fixture(scope="module")
def cat_model(tmp_path_factory):
    """Always answers "cat", then <|im_end|>."""
    return bigram_model(DEBUG_DIR / "tokenizer", tmp_path_factory.mktemp("known") / "cat", ANSWERS_CAT)


def stopped_after(cat_model, out, answers: int, monkeypatch) -> list[int]:
    """Injected fault: the run stops with KeyboardInterrupt after `answers` answers; returns the keys answered."""
    from smolalign.eval import answers as module
    from smolalign.eval.run import run_eval

    real = module.LocalAnswers.stream

    def interrupted(self, task, rows, max_new_tokens, slots):
        for made, answer in enumerate(real(self, task, rows, max_new_tokens, slots)):
            if made == answers:
                raise KeyboardInterrupt
            yield answer

    with monkeypatch.context() as patch:
        patch.setattr(module.LocalAnswers, "stream", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_eval(str(cat_model), tasks=["ifeval"], limit=6, output=str(out))
    return [json.loads(line)["key"] for line in (out / "ifeval-responses.jsonl").read_text().splitlines()[1:]]


def test_bad_lines_are_reported_skipped_and_asked_again(cat_model, tmp_path, monkeypatch, capsys):
    from smolalign.eval import answers as module
    from smolalign.eval.run import run_eval
    from smolalign.eval.tasks.ifeval import load_prompts

    out = tmp_path / "eval"
    answered = stopped_after(cat_model, out, 2, monkeypatch)
    unanswered = [row["key"] for row in load_prompts(6) if row["key"] not in answered]
    record = out / "ifeval-responses.jsonl"
    with record.open("ab") as handle:
        handle.write(b"\xff\xfe\x00\x81 binary\n")
        handle.write(json.dumps({"key": unanswered[0], "truncated": False}).encode() + b"\n")  # no response
        handle.write(json.dumps({"key": unanswered[1], "response": None, "truncated": False}).encode() + b"\n")
    asked = []
    real = module.LocalAnswers.stream

    def counted(self, task, rows, max_new_tokens, slots):
        asked.extend(row["key"] for row in rows)
        yield from real(self, task, rows, max_new_tokens, slots)

    monkeypatch.setattr(module.LocalAnswers, "stream", counted)
    results = run_eval(str(cat_model), tasks=["ifeval"], limit=6, output=str(out))
    assert "lines 4, 5, 6 not an answer" in capsys.readouterr().err
    assert sorted(asked) == sorted(unanswered), "the bad lines' prompts are asked again, the good ones are not"
    assert [r["response"] for r in results["ifeval"]["responses"]] == ["cat"] * 6
    assert not record.exists()


def test_a_foreign_header_or_a_directory_is_refused_in_one_line(cat_model, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    stopped_after(cat_model, out, 1, monkeypatch)
    record = out / "ifeval-responses.jsonl"
    lines = record.read_bytes().split(b"\n")
    record.write_bytes(b'{"settin\x00' + b"\n".join(lines[1:]))  # the header torn
    before = tree_digest(out)
    result = run_cli("eval", cat_model, "--tasks", "ifeval", "--limit", 6, "--output", out)
    assert_user_error(result)
    assert "--overwrite" in result.stderr and tree_digest(out) == before, "nothing written or lost"

    result = run_cli("eval", cat_model, "--tasks", "ifeval", "--limit", 6, "--output", out, "--overwrite")
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((out / "eval.json").read_text())["ifeval"]
    assert written["resumed_answers"] == 0 and len(written["responses"]) == 6, "started over"

    record.mkdir()
    before = tree_digest(out)
    result = run_cli("eval", cat_model, "--tasks", "ifeval", "--limit", 2, "--output", out)
    assert_user_error(result)
    assert "is a directory" in result.stderr and tree_digest(out) == before and record.is_dir()
