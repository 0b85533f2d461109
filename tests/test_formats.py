import json
import os

import pytest

from hashhop.errors import HashHopError
from hashhop.task.formats import read_jsonl, write_samples
from hashhop.task.generator import generate_many, plan
from hashhop.task.spec import HashHopSpec

SPEC = HashHopSpec(context_tokens=3000, tokenizer="cl100k_base", hops=2, chain_of_thought=True, num_queries=3, seed=11)


def test_jsonl_streams_the_same_sample_as_memory(tmp_path):
    path = str(tmp_path / "s.jsonl")
    assert write_samples(generate_many(SPEC, 3), path, "jsonl") == 3
    rows = [json.loads(line) for line in open(path)]
    expected = [p.sample() for p in generate_many(SPEC, 3)]
    for row, sample in zip(rows, expected):
        assert row["prompt"] == sample.prompt
        assert row["completion"] == sample.completion
        assert row["answers"] == list(sample.targets.values())
        assert row["prompt_tokens"] == sample.prompt_tokens <= 3000
        assert row["spec"]["seed"] in (11, 12, 13)
    again = list(read_jsonl(path))
    assert [s.prompt for s in again] == [s.prompt for s in expected]
    assert [s.prompt_tokens for s in again] == [s.prompt_tokens for s in expected]


@pytest.mark.parametrize("fmt, builder", [("jsonl", "json"), ("parquet", "parquet")])
def test_hugging_face_datasets_reads_the_export(tmp_path, fmt, builder):
    datasets = pytest.importorskip("datasets")
    path = str(tmp_path / f"s.{fmt}")
    write_samples(generate_many(SPEC, 4), path, fmt)
    table = datasets.load_dataset(builder, data_files=path, split="train", cache_dir=str(tmp_path / "cache"))
    assert table.num_rows == 4
    first = plan(SPEC).sample()
    assert table[0]["prompt"] == first.prompt
    assert table[0]["chains"] == [list(c.hashes) for c in first.queries]
    assert table[0]["link_lines"] == [list(c.lines) for c in first.queries]
    assert table[3]["spec"]["seed"] == 14


def test_text_is_prompt_blank_line_completion(tmp_path):
    path = str(tmp_path / "s.txt")
    write_samples([plan(SPEC)], path, "text")
    sample = plan(SPEC).sample()
    assert open(path).read() == sample.prompt + "\n\n" + sample.completion


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text("earlier results\n")

    def failing():
        yield plan(SPEC)
        raise HashHopError("boom")

    with pytest.raises(HashHopError):
        write_samples(failing(), str(path), "jsonl")
    assert path.read_text() == "earlier results\n"
    assert os.listdir(tmp_path) == ["s.jsonl"]


def test_output_checks(tmp_path):
    with pytest.raises(HashHopError, match="does not exist"):
        write_samples([], str(tmp_path / "missing" / "s.jsonl"), "jsonl")
    with pytest.raises(HashHopError, match="is a folder"):
        write_samples([], str(tmp_path), "jsonl")
    with pytest.raises(HashHopError, match="stdout"):
        write_samples([], "-", "parquet")


def test_write_through_a_character_device_and_a_symlink(tmp_path):
    if os.path.exists("/dev/null"):
        assert write_samples([plan(SPEC)], "/dev/null", "jsonl") == 1
        assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    target = tmp_path / "target.txt"
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_samples([plan(SPEC)], str(link), "text")
    assert link.is_symlink() and target.read_text() == plan(SPEC).sample().prompt + "\n\n" + plan(SPEC).sample().completion
    assert sorted(os.listdir(tmp_path)) == ["link.txt", "target.txt"]


def test_an_os_error_is_one_line_naming_the_path(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with pytest.raises(HashHopError, match="cannot write /dev/full: No space left on device"):
        write_samples([plan(SPEC)], "/dev/full", "jsonl")
