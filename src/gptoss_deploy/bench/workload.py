"""What the benchmark sends: seeded prompts and the arrival schedule (all at once, or Gamma-distributed gaps as in
`vllm bench serve`).

Prompt sets: `random` builds vLLM's random dataset through the server's own tokenizer (the same seed gives the same
prompts as `vllm bench serve --dataset-name random`), `words` is readable text of exact token length, `story` is the
"Write an N-word story" chat scenario. The content matters, not only the length: on the tiny MoE model a prefill of
128 word tokens took ~5 % longer than one of 128 consecutive-id tokens (server-side vllm:request_prefill_time)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import httpx
import numpy as np

from gptoss_deploy.engines import bearer, registry

# Ordinary (non-special) tokens of gpt-oss's o200k_harmony tokenizer: HF `tokenizer.vocab_size`; the special and
# reserved ids (199998-201087) come after them. vLLM's random dataset draws from range(vocab_size) minus the special
# ids, which for gpt-oss are all above it.
GPT_OSS_VOCAB_SIZE = 199_998

# A fixed word pool: random prompts are sequences of these, so any tokenizer sees ordinary text.
WORDS = ("time year people way day man thing woman life child world school state family student group country "
         "problem hand part place case week company system program question work government number night point "
         "home water room mother area money story fact month lot right study book eye job word business issue "
         "side kind head house service friend father power hour game line end member law car city community name "
         "president team minute idea kid body information back parent face others level office door health person "
         "art war history party result change morning reason research girl guy moment air teacher force education "
         "river mountain garden window engine bridge signal planet market winter summer autumn spring ocean forest "
         "letter music paper table chair light stone glass metal bread apple orange silver golden purple quiet loud "
         "rapid gentle ancient modern bright dark heavy narrow simple strange careful honest brave calm eager").split()
STORY_TOPICS = ("a lighthouse keeper who finds a map", "a robot learning to paint", "two rival bakers in a small town",
                "a storm over a mountain village", "a lost cat crossing a city", "the first day at a new school",
                "a message in a bottle", "an astronaut repairing a satellite", "a chess game in a park",
                "a river that changed its course", "a library that opens at midnight", "a train that never stops")


@dataclass
class Prompt:
    """One request's input: text (completions) or messages (chat), its length in tokens and the output limit."""

    text: str
    input_len: int
    max_tokens: int
    exact_length: bool  # True when the server's tokenizer confirmed input_len


class ServerTokenizer:
    """The server's own /tokenize and /detokenize (vLLM and llama.cpp shapes), so prompt lengths are exact."""

    def __init__(self, client: httpx.Client, base_url: str, model: str, engine: str, api_key: str | None,
                 timeout_s: float = 60.0) -> None:
        self.client, self.base_url, self.model = client, base_url, model
        self.engine = registry.known_or_default(engine)
        self.headers = bearer(api_key)
        self.timeout_s = timeout_s

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` as the server counts a prompt."""
        body = self.engine.tokenize_body(self.model, text)
        response = self.client.post(f"{self.base_url}/tokenize", json=body, headers=self.headers, timeout=self.timeout_s)
        response.raise_for_status()
        return list(response.json()["tokens"])

    def decode(self, tokens: list[int]) -> str:
        """Text of `tokens`."""
        body = self.engine.detokenize_body(self.model, tokens)
        response = self.client.post(f"{self.base_url}/detokenize", json=body, headers=self.headers, timeout=self.timeout_s)
        response.raise_for_status()
        return self.engine.detokenized_text(response.json())

    def available(self) -> bool:
        """Whether both routes answer."""
        try:
            return len(self.encode("hello world")) > 0 and isinstance(self.decode(self.encode("hi")), str)
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return False


def input_lengths(n: int, input_len: int, range_ratio: float, rng: random.Random) -> list[int]:
    """Lengths drawn uniformly from [floor(L(1-r)), ceil(L(1+r))], as vLLM's random dataset; at least 1."""
    low, high = max(1, math.floor(input_len * (1 - range_ratio))), max(1, math.ceil(input_len * (1 + range_ratio)))
    return [rng.randint(low, high) for _ in range(n)]


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def exact_prompt(tokenizer: ServerTokenizer, length: int, rng: random.Random, rounds: int = 10) -> tuple[str, int]:
    """Text whose server token count is `length` (nearest found after `rounds` adjustments)."""
    text = _words(rng, length + 8)
    best = (text, -1)
    for _ in range(rounds):
        tokens = tokenizer.encode(text)
        if len(tokens) == length:
            return text, length
        if abs(len(tokens) - length) < abs(best[1] - length) or best[1] < 0:
            best = (text, len(tokens))
        text = (tokenizer.decode(tokens[:length]) if len(tokens) > length
                else text + " " + _words(rng, length - len(tokens)))
    final = tokenizer.encode(best[0])
    return best[0], len(final)


def vllm_random_prompts(n: int, input_len: int, output_len: int, range_ratio: float, rng: np.random.Generator,
                        tokenizer: ServerTokenizer, vocab_size: int = GPT_OSS_VOCAB_SIZE) -> list[Prompt]:
    """vLLM's RandomDataset (vllm/benchmarks/datasets, 0.32), step for step with the same numpy generator calls:
    input and output lengths uniform in L(1±r), then for request i the consecutive ids
    (offset_i + i + arange(len)) % vocab_size, decoded and re-encoded by the server until the count matches
    (10 tries; missing tokens drawn at random, extra ones cut). With `np.random.default_rng(seed)` the prompts are
    those of `vllm bench serve --dataset-name random --seed seed` (the tokenizer adds no special tokens for gpt-oss)."""
    in_low, in_high = max(1, math.floor(input_len * (1 - range_ratio))), math.ceil(input_len * (1 + range_ratio))
    out_low, out_high = max(1, math.floor(output_len * (1 - range_ratio))), max(1, math.ceil(output_len * (1 + range_ratio)))
    input_lens = rng.integers(in_low, in_high + 1, size=n)
    output_lens = rng.integers(out_low, out_high + 1, size=n)
    offsets = rng.integers(0, vocab_size, size=n)
    prompts = []
    for i in range(n):
        ids = ((int(offsets[i]) + i + np.arange(int(input_lens[i]))) % vocab_size).tolist()
        text, tokens = decode_to_length(tokenizer, ids, int(input_lens[i]), rng, vocab_size)
        prompts.append(Prompt(text, len(tokens), int(output_lens[i]), exact_length=True))
    return prompts


def decode_to_length(tokenizer: ServerTokenizer, ids: list[int], target: int, rng: np.random.Generator,
                     vocab_size: int, tries: int = 10) -> tuple[str, list[int]]:
    """vLLM's gen_prompt_decode_to_target_len: decode, re-encode, pad with random ids or cut, until `target` tokens;
    returns the text and the server's tokens for it (which may still differ from `target` after `tries`)."""
    while True:
        text = tokenizer.decode(ids)
        ids = tokenizer.encode(text)
        if tries <= 0 or len(ids) == target:
            return text, ids
        if len(ids) < target:
            ids = ids + rng.integers(0, vocab_size, size=target - len(ids)).tolist()
        else:
            ids = ids[:target]
        tries -= 1


def word_prompts(n: int, input_len: int, output_len: int, range_ratio: float, seed: int,
                 tokenizer: ServerTokenizer | None) -> list[Prompt]:
    """`n` seeded random-word prompts; exact token lengths when the server tokenizes, else ~1 token per word."""
    rng = random.Random(seed)
    prompts = []
    for length in input_lengths(n, input_len, range_ratio, rng):
        if tokenizer is not None:
            text, actual = exact_prompt(tokenizer, length, rng)
            prompts.append(Prompt(text, actual, output_len, exact_length=True))
        else:
            prompts.append(Prompt(_words(rng, length), length, output_len, exact_length=False))
    return prompts


def story_prompts(n: int, words: int, output_len: int, seed: int) -> list[Prompt]:
    """Chat scenarios in the shape users try first: "Write a N-word story about ..." (seeded topic order)."""
    rng = random.Random(seed)
    topics = list(STORY_TOPICS)
    rng.shuffle(topics)
    return [Prompt(f"Write a {words}-word story about {topics[i % len(topics)]}.", 0, output_len, exact_length=False)
            for i in range(n)]


def arrival_offsets(n: int, request_rate: float, burstiness: float, seed: int, normalise: bool = True) -> list[float]:
    """Planned send times (s from the start): 0 for an unbounded rate; else cumulative Gamma(γ, 1/(rate·γ)) gaps,
    rescaled so the last arrival is at n/rate (vLLM's normalisation); γ = inf gives constant gaps."""
    if math.isinf(request_rate):
        return [0.0] * n
    rng = random.Random(seed)
    gaps = [1.0 / request_rate if math.isinf(burstiness)
            else rng.gammavariate(burstiness, 1.0 / (request_rate * burstiness)) for _ in range(n)]
    offsets = []
    total = 0.0
    for gap in gaps:
        total += gap
        offsets.append(total)
    if normalise and offsets and offsets[-1] > 0:
        factor = (n / request_rate) / offsets[-1]
        offsets = [t * factor for t in offsets]
    return offsets
