"""`gptoss gguf info|merge` on the lane's real files: the 2-shard split merges back to the original tensor set
with llama.cpp's own llama-gguf-split; incomplete sets and a missing tool are clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gptoss_deploy.cli.main import main
from gptoss_deploy.lane import Lane
from gptoss_deploy.models.gguf_tools import tensor_table
from tests.lane_support import data_of


def test_merge_round_trips_the_split_to_the_original_tensors(lane: Lane, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged.gguf"
    assert main(["gguf", "merge", lane.gguf_split_first, str(out), "--llama-gguf-split", lane.llama_gguf_split,
                 "--json"]) == 0
    report = data_of(capsys.readouterr().out)
    assert report["tensors_equal"] and report["bytes_equal"] and len(report["shards"]) == 2
    assert tensor_table(out) == tensor_table(Path(lane.gguf))  # names, types, element counts
    assert main(["gguf", "info", str(out), "--json"]) == 0
    merged = data_of(capsys.readouterr().out)[0]
    assert main(["gguf", "info", lane.gguf, "--json"]) == 0
    original = data_of(capsys.readouterr().out)[0]
    assert merged["tensor_count"] == original["tensor_count"] and merged["tensor_bytes"] == original["tensor_bytes"]
    assert main(["gguf", "merge", lane.gguf_split_first, str(out), "--llama-gguf-split", lane.llama_gguf_split]) == 2
    assert "already exists" in capsys.readouterr().err


def test_info_on_a_folder_and_an_incomplete_set(lane: Lane, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gguf", "info", str(Path(lane.gguf_split_first).parent), "--json"]) == 0
    sets = data_of(capsys.readouterr().out)
    assert len(sets) == 1 and sets[0]["complete"] and sets[0]["architecture"] == "gpt-oss"
    lonely = tmp_path / Path(lane.gguf_split_first).name
    shutil.copy(lane.gguf_split_first, lonely)
    assert main(["gguf", "info", str(lonely)]) == 1
    assert "MISSING" in capsys.readouterr().out
    assert main(["gguf", "merge", str(lonely), str(tmp_path / "m.gguf"), "--llama-gguf-split",
                 lane.llama_gguf_split]) == 2
    assert "incomplete" in capsys.readouterr().err and not (tmp_path / "m.gguf").exists()


def test_missing_tool_names_how_to_get_it(lane: Lane, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["gguf", "merge", lane.gguf_split_first, str(tmp_path / "m.gguf")]) == 1
    err = capsys.readouterr().err
    assert "llama-gguf-split was not found" in err and "--target llama-gguf-split" in err
