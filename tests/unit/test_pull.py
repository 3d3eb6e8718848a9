"""`gptoss pull` through the real huggingface_hub client against the Hub stand-in (tests/hub_standin.py): files,
sizes and sha256 verified, resume after a dropped connection, corrupt data refused and removed, no space refused
before any download, GGUF shard sets checked, offline mode."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gptoss_deploy.cli.main import main
from gptoss_deploy.errors import EngineError, InputError, IntegrityError
from gptoss_deploy.models.pull import RemoteFile, pull, wanted
from tests.hub_standin import COMMIT, hub_standin

REPO = "test-org/tiny-gpt-oss"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt_oss", "num_hidden_layers": 2}))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0"}))
    (folder / "model.safetensors").write_bytes(os.urandom(1_500_000))  # an LFS object on the stand-in
    (folder / "README.md").write_text("not pulled by default")
    return folder


@pytest.fixture
def hub(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    with hub_standin(REPO, model_dir) as (endpoint, state):
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        import huggingface_hub.constants as constants

        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield state


def test_pull_downloads_verifies_and_reuses(hub, model_dir: Path) -> None:
    report = pull(REPO)
    got = {f.path: f for f in report.files}
    assert set(got) == {"config.json", "tokenizer.json", "model.safetensors"}  # README.md is not a model file
    assert got["model.safetensors"].verified == "sha256" and got["config.json"].verified == "size"
    assert report.revision == COMMIT and report.downloaded_bytes == report.total_bytes
    snapshot = Path(report.snapshot)
    assert (snapshot / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    again = pull(REPO)  # everything is cached: nothing downloaded, everything verified again
    assert again.downloaded_bytes == 0 and not any(f.downloaded for f in again.files)
    assert all(f.verified in ("sha256", "size") for f in again.files)


def test_a_dropped_connection_is_resumed(hub, model_dir: Path) -> None:
    # huggingface_hub writes 10 MiB chunks: drop the connection after the first one is on disk
    (model_dir / "model.safetensors").write_bytes(os.urandom(24 << 20))
    hub.cut_once["model.safetensors"] = 12 << 20
    report = pull(REPO)
    assert {f.path: f.verified for f in report.files}["model.safetensors"] == "sha256"
    ranges = [r for method, path, r in hub.requests if method == "GET" and path.endswith("model.safetensors")]
    assert len(ranges) == 2 and ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert int(ranges[1][6:].split("-")[0]) >= 10 << 20  # resumed where the bytes on disk ended


def test_corrupt_data_is_refused_and_removed(hub, tmp_path: Path) -> None:
    hub.corrupt.add("model.safetensors")
    with pytest.raises(IntegrityError, match="sha256") as caught:
        pull(REPO)
    assert "removed" in caught.value.message
    blobs = list((tmp_path / "cache").rglob("blobs/*"))
    assert all(b.stat().st_size != 1_500_000 for b in blobs)  # the corrupt blob is gone
    hub.corrupt.clear()
    assert any(f.verified == "sha256" for f in pull(REPO).files)  # a new pull heals it


def test_no_space_is_refused_before_any_download(hub) -> None:
    hub.claimed_size["model.safetensors"] = 1 << 60  # an exabyte
    with pytest.raises(InputError, match="needs .* more on .* free"):
        pull(REPO)
    assert not [1 for method, path, _ in hub.requests if method == "GET" and "resolve" in path]


def test_unknown_repository_and_unreachable_hub_are_clear(hub, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="does not exist"):
        pull("test-org/no-such-model")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(EngineError, match="cannot reach the Hub"):
        pull(REPO)


def test_offline_checks_the_cache(hub, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="offline, and .* is not in the cache"):
        pull(REPO, offline=True)
    pull(REPO)
    report = pull(REPO, offline=True)
    assert report.endpoint == "offline" and {f.path for f in report.files} >= {"config.json", "model.safetensors"}


def test_gguf_shard_sets_must_be_complete() -> None:
    files = [RemoteFile(path=f"q4/model-Q4_K_M-0000{i}-of-00003.gguf", size=10) for i in (1, 2, 3)]
    files.append(RemoteFile(path="model-mxfp4.gguf", size=5))
    assert len(wanted(files, ["*Q4_K_M*"])) == 3
    with pytest.raises(InputError, match="2 of 3 GGUF shards"):
        wanted(files, ["*Q4_K_M-0000[12]*"])
    with pytest.raises(InputError, match="no file of the repository matches") as caught:
        wanted(files, [])  # a GGUF repository needs a pattern
    assert caught.value.hint and "--include '*Q4_K_M*.gguf'" in caught.value.hint


def test_the_cli_prints_the_snapshot_and_json(hub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pull", REPO, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "gptoss.pull/1" and data["data"]["revision"] == COMMIT
    assert main(["pull", "not a repo"]) == 2
    assert "not a Hub repository id" in capsys.readouterr().err
