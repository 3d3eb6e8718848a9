"""Shell completion scripts (bash, zsh, fish) generated from the argparse parser.

The parser is walked (commands, nested commands, flags, choices), so a new flag or command completes without
editing this file. Values come from the parser's `choices` and from the packaged data for the flags whose values
are names in it: --profile (hardware profiles), --model (catalog ids and aliases, and files), --gpu (GPU keys),
--provider (price table). A flag with a numeric type completes nothing; any other value completes file names.
Pure: the data is read from the package, nothing else.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

SHELLS = ("bash", "zsh", "fish")
PROGRAM = "gptoss"


@dataclass(frozen=True)
class Flag:
    """One option of one command and what its value completes to."""

    names: tuple[str, ...]
    help: str = ""
    takes_value: bool = False
    words: tuple[str, ...] = ()  # values to offer
    files: bool = False  # offer file names (alone or beside the words)


@dataclass(frozen=True)
class Command:
    """A command path (() for `gptoss` itself, ("gguf", "info")) with its flags and the words it takes."""

    path: tuple[str, ...]
    help: str = ""
    flags: tuple[Flag, ...] = ()
    subcommands: tuple[tuple[str, str], ...] = ()  # (name, help)
    choices: tuple[str, ...] = ()  # positional values with choices (render TARGET)
    files: bool = False  # a free positional (a path)

    @property
    def name(self) -> str:
        """The path as words ("" for the program)."""
        return " ".join(self.path)


def data_values() -> dict[str, tuple[str, ...]]:
    """Flag dest -> the names the packaged data offers (no names with spaces: shells split words on them)."""
    from gptoss_deploy import data
    from gptoss_deploy.hardware.profiles import profile_names
    from gptoss_deploy.models.catalog import entries

    def plain(names: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted({n for n in names if n and not re.search(r"\s", n)}))

    models = [e.id for e in entries()] + [a for e in entries() for a in e.aliases]
    return {"profile": plain(profile_names()), "model": plain(models), "gpu": plain(list(data.gpu_catalog().gpus)),
            "provider": plain(list(data.price_table().providers))}


def _help(action: argparse.Action) -> str:
    text = action.help if isinstance(action.help, str) and action.help != argparse.SUPPRESS else ""
    return " ".join(text.replace("%%", "%").split())


def _flag(action: argparse.Action, values: Mapping[str, tuple[str, ...]]) -> Flag:
    takes_value = action.nargs != 0
    words = tuple(str(c) for c in action.choices) if action.choices else values.get(action.dest, ())
    numeric = action.type is not None and action.type is not str
    files = takes_value and not action.choices and not numeric and (action.dest == "model" or action.dest not in values)
    return Flag(tuple(action.option_strings), _help(action), takes_value, words, files)


def walk(parser: argparse.ArgumentParser, values: Mapping[str, tuple[str, ...]] | None = None,
         path: tuple[str, ...] = (), help_text: str = "") -> list[Command]:
    """Every command of the parser, depth first, the program itself first."""
    values = data_values() if values is None else values
    flags: list[Flag] = []
    subcommands: list[tuple[str, str]] = []
    nested: list[Command] = []
    choices: tuple[str, ...] = ()
    files = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: _help(a) for a in action._choices_actions}
            for name, sub in action.choices.items():
                subcommands.append((name, helps.get(name, "")))
                nested += walk(sub, values, (*path, name), helps.get(name, ""))
        elif action.option_strings:
            flags.append(_flag(action, values))
        elif action.choices:
            choices += tuple(str(c) for c in action.choices)
        else:
            files = True
    return [Command(path, help_text, tuple(flags), tuple(subcommands), choices, files), *nested]


# -- bash and zsh: one candidate table in the syntax both shells read ---------------------------------------------

def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _sh_words(words: Sequence[str]) -> str:
    return _sh_quote(" ".join(words))


def _value_cases(commands: Sequence[Command]) -> list[str]:
    lines = []
    for command in commands:
        for flag in command.flags:
            if not flag.takes_value:
                continue
            kind = "words+files" if flag.words and flag.files else "words" if flag.words else \
                "files" if flag.files else "none"
            patterns = "|".join(_sh_quote(f"{command.name}|{name}") for name in flag.names)
            lines.append(f"        {patterns}) _gptoss_kind={kind}; _gptoss_words={_sh_words(flag.words)}; return 0 ;;")
    return lines


def _command_cases(commands: Sequence[Command]) -> list[str]:
    lines = []
    for command in commands:
        flags = [name for flag in command.flags for name in flag.names]
        words = [name for name, _ in command.subcommands] + list(command.choices)
        lines.append(f"        {_sh_quote(command.name)}) _gptoss_flags={_sh_words(flags)}; "
                     f"_gptoss_words={_sh_words(words)}; _gptoss_files={'1' if command.files else '0'} ;;")
    return lines


def _shared_sh(commands: Sequence[Command]) -> str:
    """Functions valid in bash and zsh: which words are commands, and what a position completes to."""
    paths = "|".join(_sh_quote(c.name) for c in commands if c.path)
    return "\n".join([
        "_gptoss_is_command() {",
        f"    case \"$1\" in {paths}) return 0 ;; esac",
        "    return 1",
        "}",
        "",
        "# _gptoss_candidates COMMAND PREVIOUS CURRENT: sets _gptoss_kind (words, files, words+files, none) and",
        "# _gptoss_words (space-separated).",
        "_gptoss_candidates() {",
        "    _gptoss_kind=none; _gptoss_words=''",
        "    case \"$1|$2\" in",
        *_value_cases(commands),
        "    esac",
        "    _gptoss_flags=''; _gptoss_files=0",
        "    case \"$1\" in",
        *_command_cases(commands),
        "    esac",
        "    case \"$3\" in",
        "        -*) _gptoss_kind=words; _gptoss_words=\"$_gptoss_flags\" ;;",
        "        *) if [ -n \"$_gptoss_words\" ]; then _gptoss_kind=words; [ \"$_gptoss_files\" = 1 ] && "
        "_gptoss_kind=words+files",
        "           elif [ \"$_gptoss_files\" = 1 ]; then _gptoss_kind=files",
        "           else _gptoss_kind=words; _gptoss_words=\"$_gptoss_flags\"; fi ;;",
        "    esac",
        "}",
    ])


def bash_script(commands: Sequence[Command], version: str) -> str:
    """The bash script: `source <(gptoss completion bash)`."""
    return f"""# bash completion for {PROGRAM} (gpt-oss-deploy {version}); generated by `{PROGRAM} completion bash`
# Load it: source <({PROGRAM} completion bash)   or save it to ~/.local/share/bash-completion/completions/{PROGRAM}
{_shared_sh(commands)}

_gptoss() {{
    local cur prev cmd word i
    COMPREPLY=()
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev=""
    (( COMP_CWORD > 0 )) && prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    if [[ "$cur" == "=" ]]; then cur=""; elif [[ "$prev" == "=" ]] && (( COMP_CWORD > 1 )); then
        prev="${{COMP_WORDS[COMP_CWORD-2]}}"; fi
    cmd=""
    for (( i = 1; i < COMP_CWORD; i++ )); do
        word="${{COMP_WORDS[i]}}"
        [[ "$word" == "--" ]] && return 0
        _gptoss_is_command "${{cmd:+$cmd }}$word" && cmd="${{cmd:+$cmd }}$word"
    done
    _gptoss_candidates "$cmd" "$prev" "$cur"
    case "$_gptoss_kind" in
        words) COMPREPLY=( $(compgen -W "$_gptoss_words" -- "$cur") ) ;;
        files) compopt -o filenames 2>/dev/null; COMPREPLY=( $(compgen -f -- "$cur") ) ;;
        words+files) compopt -o filenames 2>/dev/null
                     COMPREPLY=( $(compgen -W "$_gptoss_words" -- "$cur") $(compgen -f -- "$cur") ) ;;
    esac
    return 0
}}
complete -F _gptoss {PROGRAM}
"""


def zsh_script(commands: Sequence[Command], version: str) -> str:
    """The zsh script (needs compinit): `source <(gptoss completion zsh)`."""
    return f"""#compdef {PROGRAM}
# zsh completion for {PROGRAM} (gpt-oss-deploy {version}); generated by `{PROGRAM} completion zsh`
# Load it after compinit: source <({PROGRAM} completion zsh)   or save it as _{PROGRAM} in a folder of $fpath
{_shared_sh(commands)}

_gptoss() {{
    local cur="${{words[CURRENT]}}" prev="${{words[CURRENT-1]}}" cmd="" word i
    for (( i = 2; i < CURRENT; i++ )); do
        word="${{words[i]}}"
        [[ "$word" == "--" ]] && return 0
        _gptoss_is_command "${{cmd:+$cmd }}$word" && cmd="${{cmd:+$cmd }}$word"
    done
    _gptoss_candidates "$cmd" "$prev" "$cur"
    case "$_gptoss_kind" in
        words) compadd -- ${{=_gptoss_words}} ;;
        files) _files ;;
        words+files) compadd -- ${{=_gptoss_words}}; _files ;;
    esac
}}
compdef _gptoss {PROGRAM}
"""


# -- fish -------------------------------------------------------------------------------------------------------

def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_condition(command: Command) -> str:
    if not command.path:
        return "__fish_use_subcommand"
    parts = [f"__fish_seen_subcommand_from {word}" for word in command.path]
    deeper = [name for name, _ in command.subcommands]
    if deeper:
        parts.append("not __fish_seen_subcommand_from " + " ".join(deeper))
    return "; and ".join(parts)


def _fish_flag(flag: Flag) -> str:
    parts = []
    for name in flag.names:
        parts.append(f"-l {name[2:]}" if name.startswith("--") else f"-s {name[1:]}")
    if flag.takes_value:
        parts.append("-r" if flag.files else "-x")
        if flag.words:
            parts.append("-a " + _fish_quote(" ".join(flag.words)))
    if flag.help:
        parts.append("-d " + _fish_quote(flag.help[:80]))
    return " ".join(parts)


def fish_script(commands: Sequence[Command], version: str) -> str:
    """The fish script: `gptoss completion fish | source`."""
    lines = [f"# fish completion for {PROGRAM} (gpt-oss-deploy {version}); generated by `{PROGRAM} completion fish`",
             f"# Load it: {PROGRAM} completion fish | source   or save it to ~/.config/fish/completions/{PROGRAM}.fish",
             f"complete -c {PROGRAM} -f"]
    for command in commands:
        condition = _fish_quote(_fish_condition(command))
        for name, text in command.subcommands:
            lines.append(f"complete -c {PROGRAM} -n {condition} -a {name}" + (f" -d {_fish_quote(text[:80])}" if text else ""))
        if command.choices:
            lines.append(f"complete -c {PROGRAM} -n {condition} -a {_fish_quote(' '.join(command.choices))}")
        if command.files:
            lines.append(f"complete -c {PROGRAM} -n {condition} -F")
        for flag in command.flags:
            lines.append(f"complete -c {PROGRAM} -n {condition} {_fish_flag(flag)}")
    return "\n".join(lines) + "\n"


WRITERS: dict[str, Callable[[Sequence[Command], str], str]] = {"bash": bash_script, "zsh": zsh_script,
                                                                "fish": fish_script}


def script(shell: str, parser: argparse.ArgumentParser, values: Mapping[str, tuple[str, ...]] | None = None) -> str:
    """The completion script of `shell` for this parser."""
    from gptoss_deploy import __version__

    return WRITERS[shell](walk(parser, values), __version__)

