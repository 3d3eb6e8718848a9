"""data/vllm_surface.yaml and its loader (plan/surface.py): the flags and env vars of each vLLM release read."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from gptoss_deploy.errors import InputError
from gptoss_deploy.plan import surface

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "vllm_surface.py"


def raw() -> dict[str, Any]:
    text = resources.files("gptoss_deploy.data").joinpath("vllm_surface.yaml").read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vllm_surface_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_releases_read_are_the_tools_list_from_0_10_to_0_33() -> None:
    versions = surface.known_versions()
    assert versions == [v for v, _ in tool().VERSIONS]
    assert versions[0] == "0.10.1.1" and surface.newest_known() == "0.33.0" == versions[-1]
    minors = {tuple(int(p) for p in v.split(".")[:2]) for v in versions}
    assert {(0, m) for m in range(10, 34)} <= minors


def test_every_release_has_a_full_surface_and_the_stated_counts_match_the_ranges() -> None:
    document = raw()
    for version in surface.known_versions():
        release = surface.release(version)
        assert release.version == version
        assert len(release.flags) > 150, version
        assert len(release.env) > 100, version
        assert release.wheel.endswith(".whl") and version in release.wheel
        # The counts the generator wrote equal what the per-name ranges rebuild (what a regeneration yields).
        assert surface.stated_counts(version) == (len(release.flags), len(release.env)), version
        assert document["versions"][version] == {"wheel": release.wheel, "flags": len(release.flags),
                                                 "env": len(release.env)}
        assert release.hidden_flags <= release.flags and release.deprecated_flags <= release.flags
        assert {"-h", "--help", "--model", "--port", "--host"} <= release.flags, version
    assert document["source_url"].format(version="0.32.0") == "https://github.com/vllm-project/vllm/tree/v0.32.0"


def test_the_names_this_project_relies_on_come_and_go_where_the_sources_say() -> None:
    # The MXFP4 MoE switches and VLLM_ATTENTION_BACKEND left envs.py; the backends became flags.
    assert surface.has_env("0.23.0", "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8")
    assert not surface.has_env("0.24.0", "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8")
    assert not surface.has_env("0.32.0", "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8")
    for name in ("VLLM_MXFP4_USE_MARLIN", "VLLM_USE_FLASHINFER_MOE_MXFP4_BF16"):
        assert surface.has_env("0.23.0", name) and not surface.has_env("0.24.0", name), name
    assert surface.has_env("0.14.1", "VLLM_ATTENTION_BACKEND")
    assert not surface.has_env("0.15.1", "VLLM_ATTENTION_BACKEND")
    assert not surface.has_flag("0.12.0", "--attention-backend") and surface.has_flag("0.13.0", "--attention-backend")
    assert not surface.has_flag("0.16.0", "--moe-backend") and surface.has_flag("0.17.1", "--moe-backend")
    assert surface.has_flag("0.32.0", "--moe-backend")
    assert not surface.has_flag("0.10.1.1", "--kv-cache-memory-bytes")
    assert surface.has_flag("0.10.2", "--kv-cache-memory-bytes")
    for version in surface.known_versions():
        assert surface.has_flag(version, "--async-scheduling") and surface.has_flag(version, "--no-async-scheduling")
        assert surface.has_flag(version, "--no-enable-prefix-caching")
        assert surface.has_flag(version, "-tp") and surface.has_flag(version, "--tensor-parallel-size")
        assert surface.has_env(version, "VLLM_HOST_IP")
    assert surface.has_flag("0.12.0", "--task") and not surface.has_flag("0.13.0", "--task")
    # `vllm serve` alone added --grpc before make_arg_parser took it over.
    assert "--grpc" in surface.release("0.18.1").serve_only_flags and not surface.has_flag("0.18.1", "--grpc")
    assert surface.has_flag("0.20.2", "--grpc") and not surface.release("0.20.2").serve_only_flags
    assert "--task" in surface.release("0.12.0").deprecated_flags


def test_boolean_flags_get_their_negations_and_0_33_pairs_enable_with_disable() -> None:
    old, new = surface.release("0.32.0"), surface.release("0.33.0")
    assert {"--enable-prefix-caching", "--no-enable-prefix-caching"} <= old.flags
    assert "--disable-prefix-caching" not in old.flags and not old.hidden_flags
    # 0.33.0's parser swaps BooleanOptionalAction for an action that adds --disable-x and hides --no-enable-x.
    assert {"--enable-prefix-caching", "--disable-prefix-caching", "--no-enable-prefix-caching"} <= new.flags
    assert "--no-enable-prefix-caching" in new.hidden_flags
    # A flag with no enable/disable prefix keeps a visible --no- form.
    assert "--no-async-scheduling" in new.flags and "--no-async-scheduling" not in new.hidden_flags


def test_choices_are_recorded_for_the_backend_and_kv_cache_flags() -> None:
    kv = surface.flag_choices("0.32.0", "--kv-cache-dtype")
    assert kv is not None and {"auto", "fp8", "fp8_e4m3", "fp8_e5m2"} <= set(kv)
    moe = surface.flag_choices("0.32.0", "--moe-backend")
    assert moe is not None and {"auto", "triton", "marlin", "flashinfer_cutlass"} <= set(moe)
    attention = surface.flag_choices("0.13.0", "--attention-backend")
    assert attention is not None and {"FLASH_ATTN", "TRITON_ATTN", "FLASHINFER"} <= set(attention)
    assert surface.flag_choices("0.16.0", "--moe-backend") is None  # not a flag yet
    assert surface.flag_choices("0.12.0", "--attention-backend") is None
    assert surface.flag_choices("0.32.0", "--tool-call-parser") is None  # registry-based: not recorded
    document = raw()
    assert [run["parser"] for run in document["defaults"]["--gpu-memory-utilization"]] == [0.9, 0.92]
    assert document["defaults"]["--gpu-memory-utilization"][1]["first"] == "0.20.2"


def test_surface_version_picks_the_release_that_stands_for_a_version() -> None:
    newest = surface.newest_known()
    assert surface.surface_version("99.0") == newest
    assert surface.surface_version("0.34.0") == newest
    assert surface.surface_version("0.32.0") == "0.32.0"
    assert surface.surface_version("0.32.0+cpu") == "0.32.0"
    assert surface.surface_version("v0.32.0") == "0.32.0"
    assert surface.surface_version("0.28.0rc1") == "0.28.0"
    assert surface.surface_version("0.11.1") == "0.11.0"  # the same minor, not after it
    assert surface.surface_version("0.11.9") == "0.11.2"
    assert surface.surface_version("0.27.0") == "0.27.1"  # the same minor, even though it is a later patch
    assert surface.surface_version("0.10.1") == "0.10.1.1"
    assert surface.surface_version("0.9.2") == "0.10.1.1"  # older than all: the oldest read
    with pytest.raises(InputError):
        surface.surface_version("latest")


def test_flag_spellings_and_missing() -> None:
    assert surface.has_flag("0.32.0", "--max_num_seqs")
    assert surface.has_flag("0.32.0", "--gpu-memory-utilization=0.9")
    assert not surface.has_flag("0.32.0", "--no-such-flag")
    assert surface.missing("0.32.0", ["--moe-backend", "--nope", "-tp"],
                           ["VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8", "VLLM_HOST_IP"]) == [
        "--nope", "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8"]
    assert surface.missing("0.12.0", ["--attention-backend"], ["VLLM_ATTENTION_BACKEND"]) == ["--attention-backend"]
    assert surface.missing("0.23.0", (), iter(["VLLM_MXFP4_USE_MARLIN"])) == []


def test_the_tool_turns_ranges_into_the_yaml_shape() -> None:
    vs = tool()
    versions = ["a", "b", "c", "d"]
    assert vs.ranges([True, True, True, True], versions) == [{"first": "a", "last": None}]
    assert vs.ranges([False, True, True, False], versions) == [{"first": "b", "last": "c"}]
    assert vs.ranges([True, False, True, True], versions) == [{"first": "a", "last": "a"},
                                                            {"first": "c", "last": None}]
    assert vs.compact(vs.ranges([False, True, True, True], versions)) == {"first": "b", "last": None}
    assert vs.valued_runs([None, {"v": 1}, {"v": 1}, {"v": 2}], versions) == [
        {"first": "b", "last": "c", "v": 1}, {"first": "d", "last": None, "v": 2}]


def test_the_interpreter_reads_a_small_vllm_like_tree(tmp_path: Path) -> None:
    """The extractor on a miniature of vLLM's layout: get_kwargs over a config dataclass, a frontend loop, a
    BooleanOptionalAction, aliases, a deprecated flag and envs.py."""
    vs = tool()
    root = tmp_path / "0.0.1"
    files = {
        "vllm/__init__.py": "",
        "vllm/envs.py": """
            environment_variables = {"VLLM_A": lambda: 1, "OTHER": lambda: 2}
            def __getattr__(name):
                return environment_variables[name]()
        """,
        "vllm/config.py": """
            from dataclasses import dataclass
            from typing import Literal, Optional
            Dtype = Literal["auto", "fp8"]
            @dataclass
            class CacheConfig:
                cache_dtype: Dtype = "auto"
                enable_prefix_caching: Optional[bool] = None
                gpu_memory_utilization: float = 0.9
        """,
        "vllm/engine/__init__.py": "",
        "vllm/engine/arg_utils.py": """
            import argparse
            from dataclasses import dataclass, fields
            from vllm.config import CacheConfig
            def _compute_kwargs(cls):
                kwargs = {}
                for field in fields(cls):
                    type_hints = get_type_hints(field.type)
                    dataclass_cls = None
                    if dataclass_cls is not None:
                        pass
                    elif contains_type(type_hints, bool):
                        kwargs[name]["action"] = argparse.BooleanOptionalAction
                    elif contains_type(type_hints, Literal):
                        kwargs[name].update(literal_to_kwargs(type_hints))
                return kwargs
            def get_kwargs(cls):
                return _compute_kwargs(cls)
            class EngineArgs:
                @staticmethod
                def add_cli_args(parser):
                    cache_kwargs = get_kwargs(CacheConfig)
                    group = parser.add_argument_group(title="CacheConfig")
                    group.add_argument("--kv-cache-dtype", **cache_kwargs["cache_dtype"])
                    group.add_argument("--enable-prefix-caching", **{**cache_kwargs["enable_prefix_caching"],
                                                                     "default": None})
                    group.add_argument("--gpu-memory-utilization", "-gmu", **cache_kwargs["gpu_memory_utilization"])
                    for arg in ["--old-a", "--old-b"]:
                        parser.add_argument(arg, deprecated=True)
                    return parser
        """,
        "vllm/entrypoints/__init__.py": "",
        "vllm/entrypoints/openai/__init__.py": "",
        "vllm/entrypoints/openai/api_server.py": """
            from argparse import ArgumentParser
            from vllm.engine.arg_utils import EngineArgs
            def make_arg_parser(parser):
                for key in ("host", "port"):
                    parser.add_argument(f"--{key.replace('_', '-')}")
                parser.add_argument("--verbose", action="store_true")
                return EngineArgs.add_cli_args(parser)
            if __name__ == "__main__":
                parser = ArgumentParser()
                parser = make_arg_parser(parser)
                args = parser.parse_args()
        """,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    extracted = vs.extract("0.0.1", root)
    assert extracted.flags == {"-h", "--help", "--host", "--port", "--verbose", "--kv-cache-dtype",
                               "--enable-prefix-caching", "--no-enable-prefix-caching", "--gpu-memory-utilization",
                               "-gmu", "--old-a", "--old-b"}
    assert extracted.deprecated == {"--old-a", "--old-b"}
    assert extracted.env == {"VLLM_A", "OTHER"}
    assert extracted.choices["--kv-cache-dtype"] == {"values": ["auto", "fp8"], "enforced": True}
    assert extracted.defaults["--gpu-memory-utilization"] == {"parser": 0.9, "config": 0.9}
    assert not extracted.warnings


def test_a_release_in_the_local_source_cache_still_extracts_to_the_file() -> None:
    """When the wheel sources are already on this machine (never downloaded here), a fresh extraction of one
    release equals what the file records for it."""
    vs = tool()
    cache = Path.home() / ".cache" / "gptoss-deploy" / "vllm-src" / vs.CACHE_LAYOUT
    if not (cache / "0.32.0" / ".done").exists():
        pytest.skip("the vLLM 0.32.0 wheel sources are not in the local cache (tools/vllm_surface.py fetches them)")
    extracted = vs.extract("0.32.0", cache / "0.32.0")
    release = surface.release("0.32.0")
    assert extracted.flags == release.flags and extracted.env == release.env
    assert extracted.hidden == release.hidden_flags and not extracted.warnings


# -- the real parser ---------------------------------------------------------------------------------------------
