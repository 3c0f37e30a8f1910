"""Models larger than one device. The native engine generates through a model split into groups of layers by
accelerate (``engine.placement``): here both groups are on the CPU, the only device this machine has, with the
hooks that move activations between groups in place; vLLM takes tensor and pipeline parallel sizes (GPUs only)."""

from __future__ import annotations

import importlib.util

import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from leptonkit.serve.engine import placement
from leptonkit.serve.engine.base import SamplingParams
from leptonkit.serve.engine.generate import NativeEngine
from tests.serve.conftest import assert_diverse, decode_staggered, greedy_continuations, serve_thread

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def _two_groups(model: torch.nn.Module, first: str, second: str) -> dict[str, str]:
    """Every module named: the embeddings and the first half of the layers on ``first``, the other half with the
    final norm and the head on ``second``."""
    layers = len(model.model.layers)
    groups = {f"model.layers.{i}": first if i < layers // 2 else second for i in range(layers)}
    return {"model.embed_tokens": first, "model.rotary_emb": first, **groups, "model.norm": second, "lm_head": second}


GROUPS = [
    ("cpu", "cpu"),
    pytest.param("cuda:0", "cpu", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")),
]


@pytest.mark.parametrize(("first", "second"), GROUPS)
def test_native_engine_generates_through_a_split_model_the_tokens_of_the_whole_one(trained_generator, first, second):
    tokenizer = AutoTokenizer.from_pretrained(trained_generator)
    whole = AutoModelForCausalLM.from_pretrained(trained_generator).eval()
    prompts = ["Once upon a time", "Lily saw a big", "The dog"]
    lengths = [24, 9, 16]
    expected = greedy_continuations(whole, tokenizer, prompts, lengths)
    assert_diverse(expected)

    device_map = _two_groups(whole, first, second)
    split = placement.dispatch(AutoModelForCausalLM.from_pretrained(trained_generator).eval(), device_map)
    assert placement.is_split(split) and placement.input_device(split) == torch.device(first)
    last = split.model.layers[-1]._hf_hook  # accelerate's hook on the second group's last layer
    calls = []
    pre_forward = last.pre_forward
    last.pre_forward = lambda module, *args, **kwargs: calls.append(1) or pre_forward(module, *args, **kwargs)
    engines = []

    def make() -> NativeEngine:
        engines.append(NativeEngine("split", split, tokenizer, max_num_seqs=2))
        return engines[-1]

    params = [SamplingParams(max_tokens=n, temperature=0, ignore_eos=True) for n in lengths]
    requests = [(tokenizer(p)["input_ids"], q) for p, q in zip(prompts, params, strict=True)]
    got, batch_sizes, _ = decode_staggered(make, requests)
    assert got == expected
    assert engines[0]._fused is None  # the fused decoder would call the layers' parts past the hooks
    assert max(batch_sizes) == 2 and len(calls) >= max(lengths)  # batched steps, each through the hooks


def test_parallel_sizes_need_the_vllm_engine(cli):
    result = cli("serve", "tiny", "--engine", "native", "--tensor-parallel-size", "2", "--pipeline-parallel-size", "2")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--tensor-parallel-size 2 and --pipeline-parallel-size 2 needs the vLLM engine" in result.stderr


@pytest.mark.skipif(
    not (HAS_VLLM and torch.cuda.device_count() >= 2), reason="tensor parallelism needs vllm and 2 GPUs (none here)"
)
def test_vllm_engine_splits_each_layer_across_two_gpus(served_home):
    with serve_thread(
        models=["tiny"], home=str(served_home), engine="vllm", tensor_parallel_size=2, dtype="float32"
    ) as running:
        engine = running.app.state.models.generators["tiny"].engine
        assert engine.vllm_config.parallel_config.tensor_parallel_size == 2
        body = {"model": "tiny", "prompt": "Hello", "max_tokens": 8, "temperature": 0, "ignore_eos": True}
        answer = httpx.post(f"{running.url}/v1/completions", json=body, timeout=120).json()
        assert answer["usage"]["completion_tokens"] == 8
