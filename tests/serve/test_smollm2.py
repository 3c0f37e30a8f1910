"""Serving a real chat model: SmolLM2-135M-Instruct (imported once per session by the ``smollm2`` fixture).

Chat renders the model's own template and stops at its end-of-turn token; the generation config's defaults apply
where a request is silent; the native engine decodes token for token what ``transformers.generate`` does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from leptonkit.serve.engine.base import SamplingParams
from leptonkit.serve.engine.generate import NativeEngine
from tests.serve.conftest import assert_diverse, decode_staggered, serve_thread

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_uses_the_template_and_stops_at_the_end_of_turn(smollm2):
    from openai import OpenAI

    home, _ = smollm2
    with serve_thread(models=["smol"], home=str(home), dtype="float32", max_num_seqs=4) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
        chat = client.chat.completions.create(model="smol", messages=QUESTION, temperature=0, max_tokens=48)
    choice = chat.choices[0]
    assert "Paris" in choice.message.content, choice.message.content
    assert choice.finish_reason == "stop"  # <|im_end|>, long before max_tokens
    assert chat.usage.completion_tokens < 48
    assert "<|im_end|>" not in choice.message.content and "<|im_start|>" not in choice.message.content
    # the prompt is the ChatML template rendered with its generation prompt, not the bare question
    assert chat.usage.prompt_tokens > 20


def test_the_generation_configs_defaults_apply_where_a_request_is_silent(tiny_generator, tmp_path: Path):
    from openai import OpenAI
    from transformers import GenerationConfig

    from leptonkit.registry import Registry

    folder = tmp_path / "defaults"
    shutil.copytree(tiny_generator, folder)
    eos = GenerationConfig.from_pretrained(tiny_generator).eos_token_id
    # temperature below the greedy threshold and 6 new tokens: a silent request is greedy and 6 tokens long
    GenerationConfig(eos_token_id=eos, do_sample=True, temperature=1e-6, max_new_tokens=6).save_pretrained(folder)
    Registry(tmp_path / "home").register(str(folder), name="dflt", task="generation")
    with serve_thread(models=["dflt"], home=str(tmp_path / "home"), dtype="float32") as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)

        def complete(**fields):
            return client.completions.create(
                model="dflt", prompt="Hello world", extra_body={"ignore_eos": True}, **fields
            )

        silent = [complete(seed=seed) for seed in (1, 2)]
        greedy = complete(temperature=0, max_tokens=6)
        sampled = [complete(seed=seed, temperature=1.0, max_tokens=30) for seed in (1, 2)]
    assert [c.usage.completion_tokens for c in silent] == [6, 6]
    assert silent[0].choices[0].finish_reason == "length"
    assert silent[0].choices[0].text == silent[1].choices[0].text == greedy.choices[0].text
    # what the request says wins: 30 tokens, sampled at temperature 1 (two seeds differ)
    assert [c.usage.completion_tokens for c in sampled] == [30, 30]
    assert sampled[0].choices[0].text != sampled[1].choices[0].text


@pytest.fixture(scope="module")
def smol_greedy(smollm2) -> tuple[Path, list[list[int]], list[int], list[list[int]]]:
    """SmolLM2's greedy answers from ``transformers.generate`` (float32) to three chat prompts, up to and including
    ``<|im_end|>`` or ``lengths`` tokens: (folder, prompts, lengths, expected)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, folder = smollm2
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    # the first answer ends at <|im_end|> within its 24 tokens, the others run to their length
    questions = ["What is the capital of France?", "Name three colours.", "Write a haiku about the sea."]
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
             for q in questions]  # fmt: skip
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]  # as the chat route does
    lengths = [24, 8, 16]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.eos_token_id in (im_end, [im_end])
    expected = []
    with torch.inference_mode():
        for ids, n in zip(prompts, lengths, strict=True):
            new = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)[0, len(ids) :].tolist()
            expected.append(new[: new.index(im_end) + 1] if im_end in new else new)  # then generate pads
    assert_diverse(expected)
    assert expected[0][-1] == im_end and [len(e) for e in expected[1:]] == lengths[1:]
    return folder, prompts, lengths, expected


HAS_CXX = shutil.which("g++") is not None or shutil.which("c++") is not None
# compiling SmolLM2's 30 layers took 278 s on 2 busy cores (2026-12-06): a long test (make test-long)
COMPILE = [
    pytest.mark.skipif(not HAS_CXX, reason="torch.compile (inductor) needs a C++ compiler (g++)"),
    pytest.mark.long,
    pytest.mark.timeout(900),
]


@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=COMPILE)], ids=["eager", "compile"])
def test_native_engine_decodes_smollm2_like_generate_while_requests_join_and_leave(smol_greedy, compile):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, prompts, lengths, expected = smol_greedy
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()

    got, batch_sizes, finishes = decode_staggered(  # the 3rd request joins when the 2nd leaves
        lambda: NativeEngine("smol", model, tokenizer, max_num_seqs=2, compile=compile),
        [(ids, SamplingParams(max_tokens=n, temperature=0)) for ids, n in zip(prompts, lengths, strict=True)],
    )
    assert got == expected
    assert finishes == ["stop", "length", "length"]
    assert max(batch_sizes) == 2
