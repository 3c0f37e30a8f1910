"""The OpenAI routes against a real uvicorn server, driven by the official ``openai`` package."""

from __future__ import annotations

import asyncio

import httpx
import pytest


def test_models_lists_bases_and_adapters(openai_client):
    models = {m.id: m for m in openai_client.models.list().data}
    assert {"tiny", "sentiment", "tagger", "minilm", "sql"} <= set(models)
    assert models["sql"].model_extra["parent"] == "tiny"
    assert models["tiny"].model_extra["task"] == "generation"


def test_chat_completion_greedy_is_deterministic_and_counts_usage(openai_client):
    kwargs = {"model": "tiny", "messages": [{"role": "user", "content": "Hello world"}], "max_tokens": 12}
    first = openai_client.chat.completions.create(**kwargs, temperature=0, extra_body={"ignore_eos": True})
    second = openai_client.chat.completions.create(**kwargs, temperature=0, extra_body={"ignore_eos": True})
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.choices[0].finish_reason == "length"
    assert first.usage.completion_tokens == 12
    assert first.usage.prompt_tokens > 3
    assert first.usage.total_tokens == first.usage.prompt_tokens + 12


def _chat(content: str, **extra) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "temperature": 0} | extra


def test_streaming_chat_matches_non_streaming_and_reports_usage(openai_client):
    body = _chat("To be or not", max_tokens=20, extra_body={"ignore_eos": True})
    whole = openai_client.chat.completions.create(**body)
    chunks = list(openai_client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20


def test_fields_sent_as_null_or_honoured_as_sent_are_accepted(openai_client):
    # a client replaying an assistant message, or a framework sending every field, sends nulls: nulls are left out
    nulls = {"suffix": None, "audio": None, "top_p": None, "service_tier": "auto", "store": False, "user": "u-1"}
    messages = [
        {"role": "user", "content": "Hi", "name": "ada"},
        {"role": "assistant", "content": "Hello", "refusal": None},
    ]
    chat = openai_client.chat.completions.create(model="tiny", messages=messages, max_tokens=2, extra_body=nulls)
    assert chat.usage.completion_tokens <= 2
    embedded = openai_client.embeddings.create(model="minilm", input="hi", dimensions=384)  # the model's own size
    assert len(embedded.data[0].embedding) == 384


def test_completions_with_several_prompts_n_and_seeded_sampling(openai_client):
    body = {"model": "tiny", "prompt": ["Hello", "The quick brown"], "max_tokens": 8, "n": 2, "seed": 7}
    body |= {"temperature": 1.0, "extra_body": {"ignore_eos": True}}
    first = openai_client.completions.create(**body)
    again = openai_client.completions.create(**body)
    assert [c.index for c in first.choices] == [0, 1, 2, 3]
    assert [c.text for c in first.choices] == [c.text for c in again.choices]  # the same seed, the same text
    assert first.choices[0].text != first.choices[1].text  # choice i samples with seed + i
    assert first.usage.completion_tokens == 32


def test_stop_string_cuts_the_text_and_never_streams_it(openai_client):
    body = _chat("All the world", max_tokens=40, extra_body={"ignore_eos": True})
    full = openai_client.chat.completions.create(**body).choices[0].message.content
    stop = full[10:13]
    assert len(stop) == 3 and stop.strip(), full
    cut = openai_client.chat.completions.create(**body, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[: full.index(stop)]
    streamed = "".join(
        c.choices[0].delta.content or "" for c in openai_client.chat.completions.create(**body, stop=stop, stream=True)
    )
    assert streamed == cut.choices[0].message.content


def test_logprobs_and_top_logprobs(openai_client):
    out = openai_client.chat.completions.create(**_chat("Hello", max_tokens=5), logprobs=True, top_logprobs=3)
    entries = out.choices[0].logprobs.content
    assert len(entries) == out.usage.completion_tokens
    for entry in entries:
        assert len(entry.top_logprobs) == 3
        assert entry.logprob <= 0 and entry.logprob == pytest.approx(max(t.logprob for t in entry.top_logprobs))
    legacy = openai_client.completions.create(model="tiny", prompt="Hello", max_tokens=4, logprobs=2, temperature=0)
    assert len(legacy.choices[0].logprobs.token_logprobs) == legacy.usage.completion_tokens
    assert all(len(top) == 2 for top in legacy.choices[0].logprobs.top_logprobs)


def test_concurrent_requests_each_get_their_solo_answer(server):
    """Requests that join and leave the running batch at different steps decode exactly as they would alone."""
    prompts = [("Hello world", 30), ("The quick brown fox jumps", 5), ("To", 17), ("All the world's a stage", 24)]
    prompts += [("ça marche 🙂", 9), ("merely players", 40), ("question", 2), ("Serving language models", 12)]
    prompts += [("fun", 21), ("lazy dog", 33)]  # more than max_num_seqs=8: two wait and join later

    async def main() -> tuple[list[str], list[str]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

            async def one(prompt: str, n: int, delay: float = 0.0) -> str:
                await asyncio.sleep(delay)
                body = {"model": "tiny", "prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True}
                response = await client.post("/v1/completions", json=body)
                assert response.status_code == 200, response.text
                return response.json()["choices"][0]["text"]

            solo = [await one(p, n) for p, n in prompts]
            together = await asyncio.gather(*(one(p, n, 0.002 * i) for i, (p, n) in enumerate(prompts)))
            return solo, list(together)

    solo, together = asyncio.run(main())
    assert together == solo
