"""`gptoss completion`: the scripts parse in their shells, and bash's completion function, run for real, offers
the commands, flags, profiles and model ids the parser and the data hold."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from gptoss_deploy.cli.completion import script, walk
from gptoss_deploy.cli.main import build_parser, main
from gptoss_deploy.hardware.profiles import profile_names


@pytest.fixture(scope="module")
def bash_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "gptoss.bash"
    path.write_text(script("bash", build_parser()))
    return path


def complete(bash_file: Path, line: str) -> list[str]:
    """What bash's completion function offers for `line` (the cursor at its end; a trailing space = a new word)."""
    words = line.split(" ")
    program = "\n".join([
        f"source {bash_file}",
        "COMP_WORDS=(" + " ".join("'" + w.replace("'", "'\\''") + "'" for w in words) + ")",
        f"COMP_CWORD={len(words) - 1}",
        "_gptoss",
        'printf "%s\\n" "${COMPREPLY[@]}"',
    ])
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                          timeout=60, check=True)
    return [w for w in done.stdout.splitlines() if w]


def test_bash_script_parses(bash_file: Path) -> None:
    done = subprocess.run(["bash", "-n", str(bash_file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_bash_completes_commands(bash_file: Path) -> None:
    assert complete(bash_file, "gptoss pl") == ["plan"]
    assert set(complete(bash_file, "gptoss ")) >= {"plan", "serve", "try", "doctor", "cost", "completion", "gguf"}
    assert complete(bash_file, "gptoss gguf ") == ["info", "merge"]
    assert complete(bash_file, "gptoss render dock") == ["docker"]


def test_bash_completes_flags_of_the_command(bash_file: Path) -> None:
    assert complete(bash_file, "gptoss plan --prof") == ["--profile"]
    assert "--dry-run" in complete(bash_file, "gptoss serve --dry")
    assert "--dry-run" not in complete(bash_file, "gptoss plan --dr")  # plan has no --dry-run
    assert complete(bash_file, "gptoss --de") == ["--debug"]


def test_bash_completes_profile_names_and_model_ids(bash_file: Path) -> None:
    offered = complete(bash_file, "gptoss plan --profile 4x")
    assert offered and set(offered) == {n for n in profile_names() if n.startswith("4x")}
    assert "4xl40s" in offered
    assert "dgx-spark" in complete(bash_file, "gptoss serve --model gpt-oss-20b --profile dgx")
    assert "openai/gpt-oss-120b" in complete(bash_file, "gptoss try --model openai/gpt-oss-1")
    assert complete(bash_file, "gptoss plan --engine ll") == ["llamacpp"]
    # bash splits `--profile=4xl4` at `=` (COMP_WORDBREAKS): the words are --profile, =, 4xl4
    assert set(complete(bash_file, "gptoss plan --profile = 4xl4")) == {"4xl40s", "4xl4"}
    assert "dgx-spark" in complete(bash_file, "gptoss plan --profile =")


def test_bash_offers_nothing_for_a_number_and_stops_after_double_dash(bash_file: Path) -> None:
    assert complete(bash_file, "gptoss plan --max-model-len ") == []
    assert complete(bash_file, "gptoss serve -- --dt") == []


def test_a_new_flag_completes_without_editing_the_generator() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands.choices["plan"].add_argument("--brand-new-flag", choices=["yes", "no"])
    plan = next(c for c in walk(parser) if c.path == ("plan",))
    flag = next(f for f in plan.flags if "--brand-new-flag" in f.names)
    assert flag.words == ("yes", "no") and flag.takes_value


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_name_every_command_and_parse(shell: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    text = capsys.readouterr().out
    for command in ("plan", "serve", "try", "doctor", "cost", "render", "completion"):
        assert command in text
    assert "4xl40s" in text and "openai/gpt-oss-120b" in text
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed here: the script's syntax was not checked by {shell} -n")
    path = tmp_path / f"gptoss.{shell}"
    path.write_text(text)
    done = subprocess.run([binary, "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_unknown_shell_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "tcsh"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_fish_completes_profiles_and_commands(tmp_path: Path) -> None:
    binary = shutil.which("fish")
    if binary is None:
        pytest.skip("fish is not installed here: its completions were not run")
    path = tmp_path / "gptoss.fish"
    path.write_text(script("fish", build_parser()))

    def offered(line: str) -> set[str]:
        done = subprocess.run([binary, "--no-config", "-c", f"source {path}; complete -C '{line}'"],
                              capture_output=True, text=True, timeout=60, check=True)
        return {row.split("\t")[0] for row in done.stdout.splitlines() if row}

    assert offered("gptoss pl") == {"plan"}
    assert offered("gptoss plan --prof") == {"--profile"}
    assert offered("gptoss plan --profile 4x") == {n for n in profile_names() if n.startswith("4x")}
    assert offered("gptoss gguf ") >= {"info", "merge"}
