"""The lane itself: cached, keyed by its inputs, safe to run twice at once."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gptoss_deploy.lane import Lane, ensure_lane


def test_warm_lane_is_reused_quickly_and_concurrently(lane: Lane) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: ensure_lane(), range(2)))
    assert all(r == lane for r in results)
    assert time.monotonic() - started < 60  # generous: warm target is <= 10 s, see bench/lane_build.py


def test_tiny_model_has_the_real_architecture(lane: Lane) -> None:
    config = json.loads((Path(lane.model) / "config.json").read_text())
    assert config["architectures"] == ["GptOssForCausalLM"]
    assert config["layer_types"] == ["sliding_attention", "full_attention"] and config["sliding_window"] == 128
    assert config["num_local_experts"] >= 4 and config["vocab_size"] == 201088
    rope = config.get("rope_scaling") or config["rope_parameters"]  # transformers 5 writes rope_parameters
    assert rope["rope_type"] == "yarn" and rope["factor"] == 32.0
    assert lane.training["exact_match"] >= 0.9
    assert (Path(lane.model) / "chat_template.jinja").exists()


def test_a_recipe_change_rebuilds_only_the_model_and_its_gguf(monkeypatch) -> None:
    import gptoss_deploy.lane as lane_module

    before = lane_module.step_keys()
    monkeypatch.setattr(lane_module, "TRAIN_STEPS", lane_module.TRAIN_STEPS + 1)
    after = lane_module.step_keys()
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"tiny-model", "gguf"}
