"""Offline harmony vocab: rebuilt from the quicktok wheel, verified, and refused when corrupted."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from gptoss_deploy import vocab
from gptoss_deploy.errors import IntegrityError
from tests.lane_support import data_of, quicktok_wheel


def test_rebuild_matches_tiktokens_hashes(tmp_path: Path) -> None:
    result = vocab.install(tmp_path / "v", wheel=quicktok_wheel())
    assert result.files["o200k_base"] == vocab.ENCODINGS["o200k_base"]["sha256"]
    assert result.files["cl100k_base"] == vocab.ENCODINGS["cl100k_base"]["sha256"]
    assert vocab.is_installed(tmp_path / "v")
    first = (tmp_path / "v" / "o200k_base.tiktoken").read_text().splitlines()[0]
    assert first == "IQ== 0"  # "!" has rank 0


def test_one_flipped_byte_is_refused_and_nothing_is_installed(tmp_path: Path) -> None:
    source = quicktok_wheel()
    broken = tmp_path / source.name
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == vocab.ENCODINGS["o200k_base"]["member"]:
                data = data[:1000] + bytes([data[1000] ^ 0x01]) + data[1001:]
            dst.writestr(item, data)
    with pytest.raises(IntegrityError, match="sha256") as caught:
        vocab.install(tmp_path / "out", wheel=broken)
    assert "not installed" in (caught.value.hint or "")
    assert not (tmp_path / "out" / "o200k_base.tiktoken").exists()


def test_existing_tiktoken_file_is_verified(tmp_path: Path) -> None:
    vocab.install(tmp_path / "a", wheel=quicktok_wheel())
    good = tmp_path / "a" / "o200k_base.tiktoken"
    assert vocab.install(tmp_path / "b", tiktoken_file=good).files["o200k_base"] == vocab.ENCODINGS["o200k_base"]["sha256"]
    bad = tmp_path / "bad.tiktoken"
    bad.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(IntegrityError):
        vocab.install(tmp_path / "c", tiktoken_file=bad)


def test_cli_vocab_install(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gptoss_deploy.cli.main import main

    assert main(["vocab", "install", "--dir", str(tmp_path), "--wheel", str(quicktok_wheel())]) == 0
    assert f"TIKTOKEN_ENCODINGS_BASE={tmp_path}" in capsys.readouterr().out
    assert main(["vocab", "install", "--dir", str(tmp_path), "--wheel", str(quicktok_wheel()), "--json"]) == 0
    assert data_of(capsys.readouterr().out, "vocab")["env"] == {"TIKTOKEN_ENCODINGS_BASE": str(tmp_path)}
    assert main(["vocab", "install", "--dir", str(tmp_path), "--wheel", str(tmp_path / "nope.whl")]) == 2
