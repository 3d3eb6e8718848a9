"""Model resolution: catalog, local config.json (good and bad), GGUF headers, unknown names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptoss_deploy.errors import ModelConfigError, UnknownModelError
from gptoss_deploy.models import catalog
from gptoss_deploy.models.resolve import resolve_model
from gptoss_deploy.plan.weights import count_params, weight_bytes

GIB = 1024**3
CONFIG_120B = {
    "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "num_hidden_layers": 36, "hidden_size": 2880,
    "intermediate_size": 2880, "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64,
    "num_local_experts": 128, "experts_per_token": 4, "sliding_window": 128, "vocab_size": 201088,
    "max_position_embeddings": 131072, "layer_types": ["sliding_attention", "full_attention"] * 18,
    "quantization_config": {"quant_method": "mxfp4"},
}


def test_catalog_aliases_and_variants() -> None:
    assert resolve_model("gpt-oss-120b").id == "openai/gpt-oss-120b"
    bf16 = resolve_model("huihui-ai/Huihui-gpt-oss-120b-BF16-abliterated")
    assert bf16.quantization == "bf16" and bf16.official_alternative == "openai/gpt-oss-120b"
    gguf = resolve_model("ggml-org/gpt-oss-120b-GGUF")
    assert gguf.format == "gguf" and len(gguf.gguf_files) == 3


def test_parameter_counts_match_the_model_card() -> None:
    assert round(count_params(catalog.arch_config("gpt-oss-120b")).total / 1e9, 2) == 116.83
    assert round(count_params(catalog.arch_config("gpt-oss-20b")).total / 1e9, 2) == 20.91
    # checkpoint sizes 60.8 / 12.8 GiB; vLLM's Marlin load of 120b measured 65.97 GiB (vllm#23278)
    assert abs(weight_bytes(catalog.arch_config("gpt-oss-120b"), "mxfp4") / GIB - 60.8) < 0.1
    assert abs(weight_bytes(catalog.arch_config("gpt-oss-120b"), "mxfp4", "marlin") / GIB - 65.97) < 0.2


def test_local_directory_with_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(CONFIG_120B))
    spec = resolve_model(str(tmp_path))
    assert spec.source == "local" and spec.arch_key == "gpt-oss-120b" and spec.quantization == "mxfp4"
    assert spec.arch.num_local_experts == 128 and spec.arch.num_experts_per_tok == 4


def test_malformed_config_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"num_hidden_layers": 36,')
    with pytest.raises(ModelConfigError) as caught:
        resolve_model(str(tmp_path))
    assert str(tmp_path / "config.json") in caught.value.message and "not valid JSON" in caught.value.message


def test_missing_field_is_named(tmp_path: Path) -> None:
    config = dict(CONFIG_120B)
    del config["hidden_size"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelConfigError, match="lacks hidden_size"):
        resolve_model(str(tmp_path))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="config.json does not exist"):
        resolve_model(str(tmp_path))


def test_unknown_architecture_is_planned_generically(tmp_path: Path) -> None:
    config = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 32, "hidden_size": 4096,
              "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
              "intermediate_size": 14336, "max_position_embeddings": 131072, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    spec = resolve_model(str(tmp_path))
    assert spec.arch_key is None and not spec.is_gpt_oss
    assert any("generically" in n for n in spec.notes)
    from gptoss_deploy.hardware.profiles import profile_host
    from gptoss_deploy.plan.planner import make_plan
    from gptoss_deploy.plan.types import PlanRequest

    plan = make_plan(spec, profile_host("h100"), PlanRequest())
    assert plan.verdict == "fits" and plan.vllm is not None and plan.vllm.attention_backend == "auto"


def test_unknown_model_offline_suggests_close_names() -> None:
    with pytest.raises(UnknownModelError) as caught:
        resolve_model("gpt-oss-12b")
    assert "gpt-oss" in (caught.value.hint or "")


def test_gguf_header_is_read_without_loading_tensors(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt-oss")
    for key, value in {"block_count": 2, "embedding_length": 64, "feed_forward_length": 64,
                       "attention.head_count": 4, "attention.head_count_kv": 2, "context_length": 4096,
                       "expert_count": 4, "expert_used_count": 2, "attention.sliding_window": 128}.items():
        writer.add_uint32(f"gpt-oss.{key}", value)
    writer.add_tensor("token_embd.weight", np.zeros((8, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    spec = resolve_model(str(path))
    assert spec.format == "gguf" and spec.arch.num_local_experts == 4 and spec.arch.sliding_window == 128
    assert spec.checkpoint_bytes == 8 * 64 * 4  # the tensor data llama.cpp maps, not the header
    assert spec.checkpoint_bytes < path.stat().st_size


def test_missing_gguf_shards_are_reported(tmp_path: Path) -> None:
    from gptoss_deploy.models.gguf_info import shard_set

    first = tmp_path / "m-00001-of-00003.gguf"
    first.write_bytes(b"")
    present, missing = shard_set(first)
    assert present == [first] and missing == ["m-00002-of-00003.gguf", "m-00003-of-00003.gguf"]


def test_gguf_header_parse_is_the_same_across_buffer_refills(tmp_path: Path, monkeypatch) -> None:
    import gguf
    import numpy as np

    from gptoss_deploy.models import gguf_info

    path = tmp_path / "vocab.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt-oss")
    writer.add_uint32("gpt-oss.block_count", 2)
    writer.add_array("tokenizer.ggml.tokens", [f"tok{i}" * (i % 7 + 1) for i in range(5000)])
    writer.add_array("tokenizer.ggml.scores", [float(i) for i in range(300)])
    writer.add_string("general.name", "after the arrays")
    writer.add_tensor("token_embd.weight", np.zeros((8, 64), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    whole = gguf_info.read_gguf(path)
    monkeypatch.setattr(gguf_info._Header, "BLOCK", 7)  # refill the buffer every few bytes
    assert gguf_info.read_gguf(path) == whole
    assert whole.metadata["tokenizer.ggml.tokens"] == 5000 and whole.metadata["general.name"] == "after the arrays"
    assert whole.tensor_types == {"F16": 1} and whole.tensor_bytes == 8 * 64 * 2
