"""The one data layer: files, hub-layout directories, format normalisation, row checks, mixtures, splits."""


import pytest

from smolalign.config import DataSection
from smolalign.data import load_data
from smolalign.data.mixture import mixture_counts
from smolalign.errors import UsageError

from .conftest import write_jsonl

USER, ASSISTANT = "Sort the words: dog cat", "cat dog"
EXPECTED = [{"role": "user", "content": USER}, {"role": "assistant", "content": ASSISTANT}]


ROWS_BY_FORMAT = {
    "messages": {"messages": EXPECTED},
    "sharegpt": {"conversations": [{"from": "human", "value": USER}, {"from": "gpt", "value": ASSISTANT}]},
    "alpaca": {"instruction": USER, "input": "", "output": ASSISTANT},
    "prompt_completion": {"prompt": USER, "completion": ASSISTANT},
}


@pytest.mark.parametrize("fmt", sorted(ROWS_BY_FORMAT))
def test_chat_formats_normalise_to_messages(tmp_path, fmt):
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS_BY_FORMAT[fmt]] * 3)
    bundle = load_data(DataSection(dataset=str(path)), "chat")
    assert bundle.train.column_names == ["messages"]
    assert bundle.train[0]["messages"] == EXPECTED
    assert bundle.report["sources"][0]["format"] == fmt


def test_alpaca_input_and_system_are_kept(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "Sort", "input": "dog cat", "output": "cat dog",
                                               "system": "Be brief."}])
    messages = load_data(DataSection(dataset=str(path)), "chat").train[0]["messages"]
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sort\n\ndog cat"},
                        {"role": "assistant", "content": "cat dog"}]


def test_format_override_beats_detection(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": EXPECTED, "prompt": "x", "completion": "y"}])
    bundle = load_data(DataSection(dataset=str(path), format="prompt_completion"), "chat")
    assert bundle.train[0]["messages"] == [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]


@pytest.mark.parametrize("suffix", ["parquet", "csv", "json"])
def test_other_file_types(tmp_path, suffix):
    import datasets

    ds = datasets.Dataset.from_list([{"prompt": USER, "completion": ASSISTANT}] * 4)
    path = tmp_path / f"d.{suffix}"
    {"parquet": ds.to_parquet, "csv": ds.to_csv, "json": ds.to_json}[suffix](str(path))
    assert load_data(DataSection(dataset=str(path)), "chat").train[0]["messages"] == EXPECTED


def test_hub_layout_directory_with_configs(tmp_path):
    import datasets

    repo = tmp_path / "org__dataset"
    (repo / "data").mkdir(parents=True)
    (repo / "other").mkdir()
    datasets.Dataset.from_list([{"messages": EXPECTED}] * 5).to_parquet(str(repo / "data" / "train-00000-of-00001.parquet"))
    datasets.Dataset.from_list([{"messages": EXPECTED}] * 2).to_parquet(str(repo / "data" / "test-00000-of-00001.parquet"))
    datasets.Dataset.from_list([{"prompt": "a", "completion": "b"}] * 3).to_parquet(str(repo / "other" / "train-0.parquet"))
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n"
        "  - split: test\n    path: data/test-*\n- config_name: other\n  data_files:\n  - split: train\n"
        "    path: other/train-*\n---\n# a dataset\n")
    bundle = load_data(DataSection(dataset=str(repo), eval_split="test"), "chat")
    assert (len(bundle.train), len(bundle.eval)) == (5, 2)
    other = load_data(DataSection(dataset=str(repo), config="other"), "chat")
    assert len(other.train) == 3 and other.train[0]["messages"][0]["content"] == "a"
    with pytest.raises(UsageError, match="no split 'validation'"):
        load_data(DataSection(dataset=str(repo), split="validation"), "chat")


BAD_ROWS = [
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}, "empty content"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}, "unknown role 'robot'"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"},
                   {"role": "assistant", "content": "x"}]}, "roles do not alternate"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "roles do not alternate"),
    ({"messages": []}, "empty conversation"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "does not end with an assistant"),
]


@pytest.mark.parametrize("row,problem", BAD_ROWS, ids=[p for _, p in BAD_ROWS])
def test_bad_rows_name_the_row(tmp_path, row, problem):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": EXPECTED}] * 2 + [row])
    with pytest.raises(UsageError) as info:
        load_data(DataSection(dataset=str(path)), "chat")
    assert "row 2" in str(info.value) and problem in str(info.value)


def test_missing_column(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
    with pytest.raises(UsageError, match="none of the chat formats"):
        load_data(DataSection(dataset=str(path)), "chat")
    with pytest.raises(UsageError, match="missing column 'conversations'"):
        load_data(DataSection(dataset=str(path), format="sharegpt"), "chat")


def test_missing_and_empty_datasets(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_data(DataSection(dataset=str(tmp_path / "none.jsonl")), "chat")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(UsageError, match="empty|could not be read"):
        load_data(DataSection(dataset=str(tmp_path / "empty.jsonl")), "chat")


def test_preference_formats(tmp_path):
    uf = {"prompt": "Q", "prompt_id": "1", "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
          "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}],
          "score_chosen": 9.0, "score_rejected": 2.0}
    plain = {"prompt": "Q", "chosen": "good", "rejected": "bad"}
    expected = {"prompt": [{"role": "user", "content": "Q"}], "chosen": [{"role": "assistant", "content": "good"}],
                "rejected": [{"role": "assistant", "content": "bad"}]}
    for name, row in (("uf", uf), ("plain", plain)):
        path = write_jsonl(tmp_path / f"{name}.jsonl", [row] * 2)
        assert load_data(DataSection(dataset=str(path)), "preference").train[0] == expected


def test_preference_drops_ties_and_empties_and_counts_them(tmp_path):
    rows = [{"prompt": "Q", "chosen": "good", "rejected": "bad"}, {"prompt": "Q", "chosen": "same", "rejected": "same"},
            {"prompt": "Q", "chosen": "", "rejected": "bad"}]
    bundle = load_data(DataSection(dataset=str(write_jsonl(tmp_path / "p.jsonl", rows))), "preference")
    assert len(bundle.train) == 1
    assert bundle.report["sources"][0]["rows_dropped"] == {"chosen equals rejected": 1, "empty chosen or rejected": 1}


def test_preference_prompts_that_differ_are_an_error(tmp_path):
    row = {"chosen": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "a"}],
           "rejected": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "b"}]}
    with pytest.raises(UsageError, match="row 0: chosen and rejected have different prompt turns"):
        load_data(DataSection(dataset=str(write_jsonl(tmp_path / "p.jsonl", [row]))), "preference")


def test_mixture_weights_are_shares(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": f"a{i}", "completion": "x"} for i in range(90)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": f"b{i}", "completion": "y"} for i in range(20)])
    section = DataSection(mixture=[{"dataset": str(a), "weight": 3}, {"dataset": str(b), "weight": 1}])
    bundle = load_data(section, "chat")
    firsts = [m[0]["content"][0] for m in bundle.train["messages"]]
    assert (firsts.count("a"), firsts.count("b")) == (60, 20), "largest 75/25 mixture without repeating rows"
    again = load_data(section, "chat")
    assert again.train["messages"] == bundle.train["messages"], "deterministic"
    sized = load_data(DataSection(mixture=section.mixture, num_samples=200), "chat")
    firsts = [m[0]["content"][0] for m in sized.train["messages"]]
    assert (firsts.count("a"), firsts.count("b")) == (150, 50), "b is repeated to keep its share"


def test_mixture_counts_add_up():
    assert mixture_counts([100, 100, 100], [1, 1, 1], 10) == [4, 3, 3]
    assert mixture_counts([10, 1000], [1, 1], None) == [10, 10]


def test_eval_fraction_split_is_deterministic(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "completion": "a"} for i in range(50)])
    one = load_data(DataSection(dataset=str(path), eval_fraction=0.2), "chat")
    two = load_data(DataSection(dataset=str(path), eval_fraction=0.2), "chat")
    assert len(one.eval) == 10 and one.eval["messages"] == two.eval["messages"]
    assert not {m[0]["content"] for m in one.eval["messages"]} & {m[0]["content"] for m in one.train["messages"]}
    assert one.fingerprints() == two.fingerprints()
