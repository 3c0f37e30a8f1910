"""Query a running `leptonkit serve` with the official openai package (and leptonkit.Client for the task routes)."""

from __future__ import annotations

import sys
import time

import httpx
from openai import OpenAI

from leptonkit import Client


def wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server at {url} not ready after {timeout:.0f} s")


def main(url: str) -> None:
    wait_ready(url)
    openai = OpenAI(base_url=f"{url}/v1", api_key="unused-on-loopback")
    models = [m.id for m in openai.models.list().data]
    print("models:", models)

    if "smollm2" in models:  # a real instruct model: its own chat template, stopping at its end-of-turn token
        question = "What is the capital of France?"
        chat = openai.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": question}], temperature=0, max_tokens=48
        )
        answer = chat.choices[0]
        print(f"smollm2: {question} -> {answer.message.content!r} [finish_reason {answer.finish_reason}]")

    chat = openai.chat.completions.create(
        model="storyteller", messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=32, seed=1
    )
    print("chat:", chat.choices[0].message.content, f"[{chat.usage.completion_tokens} tokens]")

    print("stream: ", end="")
    for chunk in openai.completions.create(model="storyteller", prompt="Once upon a time", max_tokens=24, stream=True):
        print(chunk.choices[0].text if chunk.choices else "", end="", flush=True)
    print()

    vectors = openai.embeddings.create(model="minilm", input=["the cat sat", "a dog ran"])
    print("embeddings:", len(vectors.data), "x", len(vectors.data[0].embedding))

    texts = ["what a wonderful film", "dull and far too long"]
    with Client(url) as client:
        for text, result in zip(texts, client.classify(texts, model="sentiment"), strict=True):
            print(f"classify: {text!r} -> {result['label']} ({result['score']:.2f})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")
