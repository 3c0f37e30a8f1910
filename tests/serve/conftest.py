"""Serving fixtures: a tiny Llama generator with a trained byte-level BPE tokenizer and chat template (random
weights, or pretrained by leptonkit for a few hundred steps), LoRA adapters on it, tiny encoders, and a real uvicorn
server on 127.0.0.1 (a free port) in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, copy_home, tiny_bert_config

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "To be, or not to be, that is the question.",
    "All the world's a stage, and all the men and women merely players.",
    "Hello world! Serving language models with continuous batching is fun.",
    "Données, modèles, serveurs: ça marche aussi en français. 日本語もOK 🙂",
]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
GENERATOR_SIZES = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                   "num_key_value_heads": 1, "max_position_embeddings": 128}  # fmt: skip
STORIES = REPO / "examples" / "data" / "tinystories_sample.txt"


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-64 Llama with random weights and a 512-token BPE tokenizer, saved as a HF folder.

    Two query heads share one key/value head (grouped-query attention); heads of 32 dimensions, the smallest that
    vLLM's CPU attention runs."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    from leptonkit.train.presets import llama_config
    from leptonkit.train.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(CORPUS * 20, vocab_size=512, min_frequency=1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config("tiny", vocab_size=len(tokenizer), tokenizer=tokenizer, **GENERATOR_SIZES))
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("tiny-generator")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def trained_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_generator``'s shape, pretrained by ``leptonkit.pretrain`` for 300 steps of 8 blocks of 128 tokens on
    60,000 characters of the bundled TinyStories sample, with its own 512-token BPE tokenizer (10 s on one idle CPU
    core, 40 s on a busy one). Random weights send greedy decoding into one repeated token; this model's greedy
    continuations are varied sentences, so tests that compare greedy tokens compare real choices."""
    import torch

    import leptonkit
    from leptonkit.registry import Registry

    root = tmp_path_factory.mktemp("trained-generator")
    corpus = root / "stories.txt"
    corpus.write_text(STORIES.read_text(encoding="utf-8")[:60_000], encoding="utf-8")
    model = [f"pretrain.model.{key}={value}" for key, value in GENERATOR_SIZES.items()]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small gains nothing from a second thread, and loses much on a busy CPU
    try:
        version = leptonkit.pretrain(
            corpus,
            name="stories",
            vocab_size=512,
            block_size=128,
            run_dir=str(root / "run"),
            overrides=[*model, "pretrain.samples=0", "pretrain.valid_fraction=0.05"],
            registry=Registry(root / "home"),
            log=lambda _: None,
            max_steps=300,
            batch_size=8,
            lr=3e-3,
            precision="fp32",
            eval_every=1000,  # evaluate once, at the end
            checkpoint_every=1000,
        )
    finally:
        torch.set_num_threads(threads)
    return version.path


def random_lora_adapters(
    base: Path, tmp_path_factory: pytest.TempPathFactory, prefix: str, alpha: int = 64
) -> list[Path]:
    """Two LoRA adapters on ``base`` with non-zero (seeded random) weights, so that each changes its output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folders = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        peft_model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(base),
            LoraConfig(r=4, lora_alpha=alpha, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
        )
        folder = tmp_path_factory.mktemp(f"{prefix}-{seed}")
        peft_model.save_pretrained(folder)
        folders.append(folder)
    return folders


@pytest.fixture(scope="session")
def tiny_adapters(tiny_generator: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two LoRA adapters with non-zero weights, so that each visibly changes the base model's output."""
    return random_lora_adapters(tiny_generator, tmp_path_factory, "lora")


@pytest.fixture(scope="session")
def trained_adapters(trained_generator: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two LoRA adapters on ``trained_generator``, scaled down (alpha 2, not 64) so that each changes every greedy
    continuation yet leaves it varied: at full scale random weights drown the trained ones."""
    return random_lora_adapters(trained_generator, tmp_path_factory, "trained-lora", alpha=2)


def greedy_continuations(model, tokenizer, prompts: list[str], lengths: list[int]) -> list[list[int]]:
    """``transformers.generate``'s greedy continuation of each prompt, exactly ``lengths[i]`` tokens long."""
    import torch

    continuations = []
    with torch.inference_mode():
        for prompt, n in zip(prompts, lengths, strict=True):
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
            continuations.append(out[0, ids.shape[1] :].tolist())
    return continuations


def assert_diverse(continuations: list[list[int]], *, distinct: int = 5) -> None:
    """Greedy continuations that test something: each holds ``distinct`` different tokens or more (not one token
    repeated), and no two prompts continue alike."""
    for tokens in continuations:
        assert len(set(tokens)) >= min(distinct, len(tokens)), tokens
    assert len({tuple(tokens) for tokens in continuations}) == len(continuations), continuations


@pytest.fixture(scope="session")
def tiny_encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny BERT classifier and NER tagger (random heads) with the real MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertForSequenceClassification, BertForTokenClassification

    from leptonkit.registry.store import builtin_source

    tokenizer = AutoTokenizer.from_pretrained(builtin_source("builtin:minilm")[0])
    folders = {}
    for name, cls, labels in (
        ("sentiment", BertForSequenceClassification, ["negative", "positive"]),
        ("tagger", BertForTokenClassification, NER_LABELS),
    ):
        config = tiny_bert_config(labels, max_position_embeddings=128)
        folder = tmp_path_factory.mktemp(name)
        cls(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[name] = folder
    return folders


class ServerThread:
    """A real uvicorn server for ``create_app(config)`` in a thread; ``url`` is http://127.0.0.1:PORT. ``setup``
    may add to the app first (the web console mounts itself so); ``app`` serves another ASGI app instead."""

    def __init__(self, config=None, setup=None, app=None) -> None:
        import uvicorn

        from leptonkit.serve.server import uvicorn_server

        if app is not None:
            self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        else:
            self.server = uvicorn_server(config, setup)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        import torch

        self.torch_threads = torch.get_num_threads()  # the server may change it: restore for other tests
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.app = self.server.config.app
        return self

    def __exit__(self, *exc) -> None:
        import torch

        self.server.should_exit = True
        self.thread.join(timeout=60)
        torch.set_num_threads(self.torch_threads)


@contextlib.contextmanager
def serve_thread(setup: Callable[[Any], None] | None = None, **fields) -> Iterator[ServerThread]:
    from leptonkit.serve.config import ServeConfig

    with ServerThread(ServeConfig(**{"port": 0, "threads": 1} | fields), setup) as server:
        yield server


SSE_DONE = "[DONE]"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sse_event(line: str) -> dict | str | None:
    """The JSON event of a server-sent ``data:`` line, :data:`SSE_DONE` for ``data: [DONE]``, None for other lines."""
    if not line.startswith("data: "):
        return None
    payload = line.removeprefix("data: ")
    return SSE_DONE if payload == SSE_DONE else json.loads(payload)


def decode_staggered(
    make_engine: Callable[[], Any], requests: list[tuple[list[int], Any]]
) -> tuple[list[list[int]], list[int], list[str | None]]:
    """Start the engine ``make_engine()`` builds, send ``requests`` (token ids, ``SamplingParams``) 1 ms apart, and
    stop it: each request's tokens, the batch size at every delta (requests share steps as they join and leave),
    and each request's finish reason."""

    async def run() -> tuple[list[list[int]], list[int], list[str | None]]:
        engine = make_engine()
        await engine.start()
        batch_sizes: list[int] = []
        finishes: list[str | None] = [None] * len(requests)

        async def one(i: int, ids: list[int], params: Any) -> list[int]:
            await asyncio.sleep(0.001 * i)
            tokens: list[int] = []
            async for delta in engine.generate(ids, params):
                tokens += delta.token_ids
                finishes[i] = delta.finish_reason or finishes[i]
                batch_sizes.append(len(engine._seqs))
            return tokens

        try:
            got = await asyncio.gather(*(one(i, ids, params) for i, (ids, params) in enumerate(requests)))
        finally:
            await engine.stop()
        return list(got), batch_sizes, finishes

    return asyncio.run(run())


def inference_keys(home: Path, prefix: str, names: Iterable[str]) -> dict[str, str]:
    """New inference-scope keys in ``home``'s key store, named ``PREFIX-NAME``: ``{name: key}``."""
    from leptonkit.security.keys import KeyStore

    store = KeyStore(home)
    return {name: store.create(f"{prefix}-{name}", "inference")[1] for name in names}


@pytest.fixture(scope="module")
def served_home(tmp_path_factory, tiny_generator, tiny_adapters, tiny_encoders) -> Path:
    """A registry holding tiny:1, its adapters sql:1 and poet:1, sentiment:1, tagger:1 and minilm:1."""
    from leptonkit.registry import Registry

    home = tmp_path_factory.mktemp("serve-home")
    registry = Registry(home)
    registry.register(str(tiny_generator), name="tiny", task="generation")
    registry.register(str(tiny_adapters[0]), name="sql", base="tiny:1", task="generation")
    registry.register(str(tiny_adapters[1]), name="poet", base="tiny:1", task="generation")
    registry.register(str(tiny_encoders["sentiment"]), name="sentiment", task="classification")
    registry.register(str(tiny_encoders["tagger"]), name="tagger", task="ner")
    registry.register("builtin:minilm", name="minilm", task="embedding")
    return home


@pytest.fixture(scope="module")
def server(served_home: Path) -> Iterator[ServerThread]:
    """One server for a test module: every model above, adapter ``sql`` loaded at start, short timeouts."""
    with serve_thread(
        models=["tiny", "sentiment", "tagger", "minilm"],
        adapters={"sql": "sql"},
        home=str(served_home),
        dtype="float32",
        max_num_seqs=8,
        max_queue=64,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def openai_client(server: ServerThread):
    from openai import OpenAI

    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="session")
def smollm2(smollm2_import, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The session's SmolLM2-135M-Instruct import (``smol:1``) in a registry home of the serving tests' own, which
    they add versions and adapters to: (home, version folder)."""
    imported, version = smollm2_import
    home = copy_home(imported, tmp_path_factory.mktemp("smollm2") / "home")
    return home, home / Path(version["path"]).relative_to(imported)


def quantize_w8a8(model: Any) -> None:
    """Quantise ``model`` (bfloat16) in place as ``models quantize --method w8a8`` does: torchao's int8 weights and
    per-token int8 activations in every linear layer, the LM head untied from the embeddings."""
    _quantize(model, "w8a8")


def quantize_int4(model: Any) -> None:
    """Quantise ``model`` (bfloat16) in place as ``models quantize --method int4`` does: torchao's CPU int4, groups of
    32, every linear layer but the LM head, which becomes int8."""
    _quantize(model, "int4")


def _quantize(model: Any, method: str) -> None:
    """``model`` quantised in place by ``method``: its torchao configuration on every linear layer but the LM head,
    then the head as the method stores it (``quantize_head``)."""
    import torch
    from torchao.quantization import quantize_

    from leptonkit.train.quantize import METHODS, quantize_head

    head = model.get_output_embeddings()
    layers = lambda module, _: isinstance(module, torch.nn.Linear) and module is not head  # noqa: E731
    quantize_(model, METHODS[method].config(), filter_fn=layers)
    quantize_head(model, method)
