"""``serve --compile``: the decode step compiled by inductor decodes like the eager engine and ``generate``.

The model is the tiny Llama leptonkit pretrains for the engine tests (``trained_generator``): its greedy
continuations are varied (checked), so equal tokens mean equal choices, not one token repeated."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from leptonkit.serve.engine.base import SamplingParams, collect
from leptonkit.serve.engine.generate import NativeEngine
from leptonkit.serve.engine.kv_cache import BatchCache
from tests.serve.conftest import assert_diverse, quantize_int4, quantize_w8a8
from tests.serve.test_engine import TWO_PROMPTS, _decode_together, _generate_each

pytestmark = pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None,
    reason="torch.compile (inductor) needs a C++ compiler (g++) to build its CPU kernels",
)


@pytest.fixture(scope="module")
def compiled(trained_generator):
    """A float32 engine whose decode step is compiled (once for the module: compiling takes seconds)."""
    model = AutoModelForCausalLM.from_pretrained(trained_generator).eval()
    tokenizer = AutoTokenizer.from_pretrained(trained_generator)
    engine = NativeEngine("tiny", model, tokenizer, compile=True)
    return engine, model, tokenizer


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def test_compiled_engine_decodes_like_generate_without_recompiling(compiled):
    engine, model, tokenizer = compiled
    prompts = [tokenizer(p)["input_ids"] for p in (*TWO_PROMPTS, "A")]  # left padding; 100 tokens cross 3 growths
    expected = _generate_each(model, prompts, 100)
    assert_diverse(expected, distinct=20)
    params = SamplingParams(max_tokens=100, temperature=0, ignore_eos=True)

    async def tokens(ids: list[int], delay: float = 0.0) -> list[int]:
        await asyncio.sleep(delay)
        return [t for delta in await collect(engine.generate(ids, params)) for t in delta.token_ids]

    async def run() -> tuple[list[list[int]], list[list[int]], list[int], int]:
        queued = [asyncio.ensure_future(tokens(ids)) for ids in prompts]  # prefilled together once started
        await engine.start()  # compiles both graphs (one row, several) before returning
        try:
            together = list(await asyncio.gather(*queued))
            graphs = _graphs()
            alone = await tokens(prompts[0])  # one row
            staggered = list(await asyncio.gather(*(tokens(ids, 0.02 * i) for i, ids in enumerate(prompts))))
            return together, staggered, alone, _graphs() - graphs
        finally:
            await engine.stop()

    together, staggered, alone, new_graphs = asyncio.run(run())
    assert engine._compiled is not None
    # float32: the fused loops' rounding stays far below any gap between the two best tokens
    assert together == staggered == expected
    assert alone == expected[0]
    assert new_graphs == 0  # no batch size or cache length compiled anything after start


def test_compiled_step_logits_match_the_eager_step(compiled):
    """One step on identical caches: the compiled logits equal the eager fused forward's to float32 rounding, and
    both append the same key and value columns."""
    engine, _, tokenizer = compiled
    _one_step_eager_and_compiled(engine, tokenizer)


def test_a_second_model_of_the_same_shapes_runs_its_own_compiled_weights(compiled, trained_generator):
    """dynamo keeps graphs, and counts recompilations, per code object, and freezing compiles the weights in: a
    second model with the same shapes in the process must not run the first one's graph, nor run eagerly because
    the first one's graphs used up the recompilation limit (set here to the graphs of one step, two)."""
    import torch._dynamo.config

    first, model, tokenizer = compiled
    torch.manual_seed(0)
    with torch._dynamo.config.patch(recompile_limit=2):
        other = NativeEngine("other", AutoModelForCausalLM.from_config(model.config).eval(), tokenizer, compile=True)
        first_logits = _one_step_eager_and_compiled(first, tokenizer)
        with torch.profiler.profile() as profile:
            other_logits = _one_step_eager_and_compiled(other, tokenizer)
    assert (first_logits - other_logits).abs().max() > 1.0  # different weights, different logits
    assert any(event.key.startswith("Torch-Compiled Region") for event in profile.key_averages())


def test_without_an_identity_guard_on_its_weights_the_step_stays_eager(compiled, monkeypatch, caplog):
    """Where dynamo guards the weights in another way than the filter expects, the step must not share graphs across
    models: ``compiled_step`` logs and returns None, and the engine decodes eagerly."""
    from leptonkit.serve.engine import compiled_step as module
    from leptonkit.serve.engine.fused_decoder import fused_decoder

    _, model, _ = compiled
    torch.manual_seed(0)
    fresh = AutoModelForCausalLM.from_config(model.config).eval()  # new weights: no graph of another step matches
    own_guards = module._own_guards

    def blind(step):  # the filter, fed guards whose identity guard no longer points at the step's weight
        keep = own_guards(step)
        return lambda entries: keep([replace(e, value=None) if e.guard_type == "ID_MATCH" else e for e in entries])

    monkeypatch.setattr(module, "_own_guards", blind)
    with caplog.at_level("WARNING", logger=module.__name__):
        assert module.compiled_step(fused_decoder(fresh), 64) is None
    assert "no identity guard" in caplog.text


def _one_step_eager_and_compiled(engine: NativeEngine, tokenizer) -> torch.Tensor:
    """Assert that ``engine``'s compiled step equals its eager fused step on a two-row batch (logits, cache);
    returns the logits."""
    from leptonkit.serve.engine.compiled_step import compiled_step

    if engine._compiled is None:  # its engine has not started
        engine._compiled = compiled_step(engine._fused, engine.context_length)
    prompts = [tokenizer(p)["input_ids"] for p in TWO_PROMPTS]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    valid = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    positions = (valid.cumsum(-1) - 1).clamp(min=0)
    caches = []
    with torch.inference_mode():
        for _ in range(2):
            cache = BatchCache(engine._num_layers, torch.float32)
            engine._fused(ids, positions, cache, valid)
            cache.set_valid(valid)
            caches.append(cache)
        step_ids, step_positions = torch.tensor([[5], [9]]), positions[:, -1:] + 1
        eager = engine._fused(step_ids, step_positions, caches[0], caches[0].decode_mask())
        fused = engine._compiled.decode(step_ids, step_positions, caches[1], caches[1].decode_mask())
    torch.testing.assert_close(fused, eager, rtol=1e-4, atol=1e-4)
    for mine, theirs in zip(caches[1].layers, caches[0].layers, strict=True):
        assert mine.length == theirs.length == width + 1
        torch.testing.assert_close(mine.keys, theirs.keys, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mine.values, theirs.values, rtol=1e-5, atol=1e-5)
    return eager


def test_compile_leaves_models_outside_the_llama_family_eager(compiled):
    from transformers import GPT2Config, GPT2LMHeadModel

    _, _, tokenizer = compiled
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    engine = NativeEngine("gpt2", model, tokenizer, compile=True)
    prompts = [tokenizer(p)["input_ids"] for p in TWO_PROMPTS]
    assert asyncio.run(_decode_together(engine, prompts, 10)) == _generate_each(model, prompts, 10)
    assert engine._compiled is None


def test_compile_leaves_llamas_with_mlp_biases_eager(compiled):
    from transformers import LlamaConfig, LlamaForCausalLM

    _, _, tokenizer = compiled
    torch.manual_seed(0)
    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2}
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), mlp_bias=True, **sizes)).eval()
    engine = NativeEngine("biased", model, tokenizer, compile=True)
    prompts = [tokenizer(p)["input_ids"] for p in TWO_PROMPTS]
    assert asyncio.run(_decode_together(engine, prompts, 10)) == _generate_each(model, prompts, 10)
    assert engine._fused is not None and engine._compiled is None


def test_bf16_compiled_step_reads_a_bf16_cache_like_the_eager_float32_step(bf16_engines):
    """In bf16 the compiled step attends over a bf16 cache (half the bytes the eager engine's float32 cache reads);
    its logits match the eager step over a float32 cache to bf16 rounding, and the columns it appends hold the same
    values, since keys and values come out of bf16 projections either way."""

    engine, tokenizer = bf16_engines["engines"][1], bf16_engines["tokenizer"]
    step = engine._compiled  # compiled when the engine started (the fixture's decoding)
    assert step is not None
    prompts = [tokenizer(p)["input_ids"] for p in TWO_PROMPTS]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    valid = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    positions = (valid.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        caches = [BatchCache(engine._num_layers, dtype) for dtype in (torch.float32, torch.bfloat16)]
        for cache in caches:
            engine._fused(ids, positions, cache, valid)
            cache.set_valid(valid)
        for token in (5, 9, 13):  # three steps: the compiled one keeps reading what it appended
            step_ids, step_positions = torch.tensor([[token], [token + 1]]), positions[:, -1:] + 1
            positions = step_positions
            eager = engine._fused(step_ids, step_positions, caches[0], caches[0].decode_mask())
            fused = step.decode(step_ids, step_positions, caches[1], caches[1].decode_mask())
            torch.testing.assert_close(fused, eager, rtol=0.05, atol=0.05)
    for mine, theirs in zip(caches[1].layers, caches[0].layers, strict=True):
        assert mine.keys.dtype == torch.bfloat16 and mine.length == theirs.length == width + 3
        torch.testing.assert_close(mine.cached()[0].float(), theirs.cached()[0], rtol=0.02, atol=0.02)
        torch.testing.assert_close(mine.cached()[1].float(), theirs.cached()[1], rtol=0.02, atol=0.02)


def _record_cache_dtypes(engine: NativeEngine, *, lora_only: bool = False) -> list[torch.dtype]:
    """The dtype of the running batch's cache after each engine step (only steps with adapters: ``lora_only``)."""
    seen: list[torch.dtype] = []
    step = engine._iterate

    def iterate(admitted):
        step(admitted)
        if engine._cache is not None and (not lora_only or engine._lora.mask is not None):
            seen.append(engine._cache.layers[0].keys.dtype)

    engine._iterate = iterate
    return seen


BF16_PROMPTS = ("Once upon a time", "Lily and Tom went to the park", "The little dog was sad because", "One day")


def _decode_eager_and_compiled(folder, prepare=None) -> dict:
    """The same bf16 weights (from ``folder``, changed in place by ``prepare``) decoded by the eager engine (float32
    cache) and by the compiled step (bf16 cache): 40 greedy tokens for each of ``BF16_PROMPTS``, prefilled together;
    the engines (eager, compiled), their outputs and the cache dtypes each step ran on."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompts = [tokenizer(p)["input_ids"] for p in BF16_PROMPTS]
    engines, outputs, caches = [], [], []
    for compile in (False, True):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
        if prepare is not None:
            prepare(model)
        engine = NativeEngine(f"tiny-bf16-{compile}", model, tokenizer, compile=compile)
        assert engine._kv_dtype == torch.float32  # eager until the compiled step exists
        seen = _record_cache_dtypes(engine)
        outputs.append(asyncio.run(_decode_together(engine, prompts, 40)))
        engines.append(engine)
        caches.append(set(seen))
    return {"tokenizer": tokenizer, "engines": engines, "outputs": outputs, "caches": caches}


@pytest.fixture(scope="module")
def bf16_engines(trained_generator) -> dict:
    """:func:`_decode_eager_and_compiled` on the trained generator's bf16 weights."""
    return _decode_eager_and_compiled(trained_generator)


def test_bf16_compiled_engine_decodes_like_the_eager_bf16_engine_token_for_token(trained_generator, bf16_engines):
    """40 greedy tokens for each of four prompts are the same tokens, eager or compiled, and they are varied; where
    a prompt's two runs part (at most one of four), they part at a near tie in the model's own forward. Both round
    to bf16, in different orders (fused loops, a bf16 cache against a float32 one): the tiny model pretrained on an
    AVX-512 CPU had its two best logits 0.024 apart (7.256 and 7.232) at the second token of one prompt."""
    eager, fused = bf16_engines["outputs"]
    assert [engine._compiled is not None for engine in bf16_engines["engines"]] == [False, True]
    assert bf16_engines["caches"] == [{torch.float32}, {torch.bfloat16}]
    assert [len(tokens) for tokens in fused] == [40] * len(BF16_PROMPTS)
    assert_diverse(eager, distinct=10)
    model = AutoModelForCausalLM.from_pretrained(trained_generator, dtype=torch.bfloat16).eval()
    _assert_equal_up_to_a_near_tie(model, bf16_engines)


def test_bf16_compiled_engine_serves_lora_rows_eagerly_over_its_bf16_cache(trained_generator, trained_adapters):
    """Steps with adapters run eagerly; over the compiled engine's bf16 cache they attend without matmuls, and
    each adapter still changes its rows' output."""
    tiny_adapters = trained_adapters
    model = AutoModelForCausalLM.from_pretrained(trained_generator, dtype=torch.bfloat16).eval()
    tokenizer = AutoTokenizer.from_pretrained(trained_generator)
    engine = NativeEngine("tiny-bf16-lora", model, tokenizer, compile=True)
    ids = tokenizer("To be, or not to be")["input_ids"]
    params = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)
    lora_steps = _record_cache_dtypes(engine, lora_only=True)

    async def run() -> list[list[int]]:
        await engine.start()
        try:
            await engine.add_adapter("first", str(tiny_adapters[0]))
            await engine.add_adapter("second", str(tiny_adapters[1]))
            streams = [collect(engine.generate(ids, params, adapter=a)) for a in (None, "first", "second")]
            results = await asyncio.gather(*streams)
        finally:
            await engine.stop()
        return [[t for delta in deltas for t in delta.token_ids] for deltas in results]

    base, first, second = asyncio.run(run())
    assert engine._compiled is not None and len(base) == len(first) == len(second) == 10
    assert_diverse([base, first, second])
    assert first != base and second != base
    assert lora_steps and set(lora_steps) == {torch.bfloat16}


def test_int4_weights_decode_through_the_compiled_step_like_the_eager_int4_engine(trained_generator):
    """torchao's CPU int4 weights and the int8 LM head (``models quantize --method int4``, bfloat16) compile with the
    step: 40 greedy tokens for each of four prompts, prefilled together, are the eager int4 engine's tokens, up to a
    near tie. The head's logits are bf16 (its kernel's output dtype), and the compiled step reads a bf16 cache where
    the eager one reads float32: where the two best logits are within a few bf16 steps of each other, either may
    win (seen once: 4.781 against 4.719, two steps apart). Such a parting must be at a near tie of those two tokens
    in the model's own forward."""
    pytest.importorskip("torchao")

    decoded = _decode_eager_and_compiled(trained_generator, quantize_int4)
    assert all(engine._fused is not None for engine in decoded["engines"])
    assert [engine._compiled is not None for engine in decoded["engines"]] == [False, True]
    assert_diverse(decoded["outputs"][0], distinct=10)
    model = AutoModelForCausalLM.from_pretrained(trained_generator, dtype=torch.bfloat16).eval()
    quantize_int4(model)
    _assert_equal_up_to_a_near_tie(model, decoded)


def test_w8a8_weights_decode_through_the_compiled_step_in_onednn_int8_like_the_eager_w8a8_engine(trained_generator):
    """torchao's W8A8 weights (``models quantize --method w8a8``, bfloat16) compile with the step: 40 greedy tokens
    for each of four prompts, prefilled together, are the eager W8A8 engine's tokens up to near ties, and the
    compiled step's matmuls are oneDNN's int8 ones on prepacked weights (inductor's rewrite of the decomposed layer),
    the LM head's included, not ``_int_mm`` nor a bf16 matmul on dequantised weights. Any prompt may part: with
    int8 activations a value one bf16 rounding apart can land on the next int8 step, which moves a logit further
    than bf16 alone does (on this tiny model three of four prompts parted once, each at a near tie)."""
    pytest.importorskip("torchao")

    decoded = _decode_eager_and_compiled(trained_generator, quantize_w8a8)
    engines = decoded["engines"]
    assert all(engine._fused is not None for engine in engines)
    assert [engine._compiled is not None for engine in engines] == [False, True]
    assert engines[1]._compiled.int8 == {"qkv", "o_proj", "gate_up", "down", "head"}
    assert_diverse(decoded["outputs"][0], distinct=10)
    model = AutoModelForCausalLM.from_pretrained(trained_generator, dtype=torch.bfloat16).eval()
    quantize_w8a8(model)
    _assert_equal_up_to_a_near_tie(model, decoded, parted=len(BF16_PROMPTS))

    engine, layers = engines[1], engines[1]._num_layers
    ids = torch.tensor(decoded["tokenizer"]("The weather today")["input_ids"])[None]
    valid = torch.ones_like(ids)
    cache = BatchCache(layers, torch.bfloat16)
    with torch.inference_mode():
        engine._fused(ids, valid.cumsum(-1) - 1, cache, valid)
        cache.set_valid(valid)
        with torch.profiler.profile() as profile:
            engine._compiled.decode(torch.tensor([[5]]), torch.tensor([[ids.shape[1]]]), cache, cache.decode_mask())
    calls = {event.key: event.count for event in profile.key_averages()}
    assert calls.get("onednn::qlinear_pointwise") == 4 * layers + 1  # fused q/k/v, o, fused gate/up, down; head
    assert "mkldnn::_linear_pointwise" not in calls and "aten::_int_mm" not in calls


def _assert_equal_up_to_a_near_tie(model, decoded: dict, parted: int = 1) -> None:
    """The eager and compiled greedy tokens of :func:`_decode_eager_and_compiled` are the same for all prompts but
    at most ``parted``, and each of those parts where ``model``'s own two best logits are the two tokens, within
    four bf16 steps of each other."""
    eager, fused = decoded["outputs"]
    agreed = 0
    for prompt, ours, theirs in zip(BF16_PROMPTS, eager, fused, strict=True):
        parting = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b), None)
        if parting is None:
            agreed += 1
            continue
        ids = decoded["tokenizer"](prompt)["input_ids"] + ours[:parting]
        with torch.inference_mode():
            best = model(torch.tensor([ids])).logits[0, -1].float().topk(2)
        assert set(best.indices.tolist()) == {ours[parting], theirs[parting]}, (prompt, parting, best)
        gap = float(best.values[0] - best.values[1])
        assert gap <= 4 * 2**-7 * abs(float(best.values[0])), (prompt, parting, best)  # four bf16 steps
    assert agreed >= len(BF16_PROMPTS) - parted
