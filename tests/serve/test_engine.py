"""The native engine in-process: continuous batching decodes exactly like ``transformers.generate``.

Greedy-equality tests run the tiny Llama that leptonkit pretrains for a few hundred steps (``trained_generator``), so
each prompt continues with varied tokens (checked) rather than one token repeated."""

from __future__ import annotations

import asyncio
import copy
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from leptonkit.errors import InvalidInputError
from leptonkit.registry.quantized import int4_rows_concatenate
from leptonkit.serve.engine.base import SamplingParams, collect
from leptonkit.serve.engine.cpu_linear import bucket, pack_linears
from leptonkit.serve.engine.detokenize import Detokenizer
from leptonkit.serve.engine.generate import NativeEngine
from tests.serve.conftest import assert_diverse, decode_staggered, greedy_continuations, quantize_int4


@pytest.fixture(scope="module")
def tiny(trained_generator):
    model = AutoModelForCausalLM.from_pretrained(trained_generator).eval()
    return model, AutoTokenizer.from_pretrained(trained_generator)


TWO_PROMPTS = ("Hello world", "To be, or not to be, that is")


# the second set runs past several growths of the KV cache's slabs (kv_cache._GROWTH columns each)
@pytest.mark.parametrize("lengths", [[20, 7, 13, 16], [100, 40, 90, 70]])
def test_greedy_tokens_equal_generate_while_requests_join_and_leave(tiny, lengths):
    model, tokenizer = tiny
    prompts = ["Hello world", "To be, or not to be, that is", "ça", "All the world's a stage, and all the men"]
    expected = greedy_continuations(model, tokenizer, prompts, lengths)
    assert_diverse(expected)

    params = [SamplingParams(max_tokens=n, temperature=0, ignore_eos=True) for n in lengths]
    got, batch_sizes, _ = decode_staggered(  # the 3rd and 4th join as others leave
        lambda: NativeEngine("tiny", model, tokenizer, max_num_seqs=2),
        [(tokenizer(p)["input_ids"], q) for p, q in zip(prompts, params, strict=True)],
    )
    assert got == expected
    assert max(batch_sizes) == 2  # requests really shared decode steps, within max_num_seqs


def test_models_outside_the_llama_family_decode_through_the_generic_forward(tiny):
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tokenizer = tiny
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=64, n_layer=2, n_head=4)
    model = GPT2LMHeadModel(config).eval()
    engine = NativeEngine("gpt2", model, tokenizer)
    assert engine._fused is None
    prompts = [tokenizer(p)["input_ids"] for p in TWO_PROMPTS]
    expected = _generate_each(model, prompts, 40)
    assert asyncio.run(_decode_together(engine, prompts, 40)) == expected  # one left-padded batch


@pytest.mark.parametrize("family", ["mistral", "qwen2"])
def test_other_llama_family_decoders_take_the_fused_forward_and_decode_like_generate(tiny, family):
    """Mistral and Qwen2 name their weights as Llama does: they get the trained Llama's (Qwen2 adds random q/k/v
    biases), so their greedy continuations are varied too."""
    from transformers import AutoConfig

    trained, tokenizer = tiny
    torch.manual_seed(0)
    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = AutoConfig.for_model(
        family, vocab_size=len(tokenizer), num_key_value_heads=1, sliding_window=None, **sizes
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    missing, unexpected = model.load_state_dict(trained.state_dict(), strict=False)
    assert not unexpected and all(name.endswith("_proj.bias") for name in missing)
    if family == "qwen2":
        assert model.model.layers[0].self_attn.q_proj.bias is not None  # fused with its bias
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.02)  # non-zero, so that a fused forward that dropped them would differ
    engine = NativeEngine(family, model, tokenizer)
    assert engine._fused is not None
    prompts = [tokenizer(p)["input_ids"] for p in TWO_PROMPTS]
    expected = _generate_each(model, prompts, 20)
    assert_diverse(expected)
    assert asyncio.run(_decode_together(engine, prompts, 20)) == expected


def test_int4_projections_are_fused_bit_for_bit_and_kept_as_views(tiny):
    """torchao's CPU int4 weights (``models quantize --method int4``, bfloat16): the fused q/k/v and gate/up layers
    give the separate layers' outputs exactly, the engine's fused forward computes the model's own logits (to bf16
    rounding), and where this CPU's packed rows concatenate (64 + 32 + 32 on AVX2) they are the only copy."""
    pytest.importorskip("torchao")

    trained, tokenizer = tiny
    model = copy.deepcopy(trained).to(torch.bfloat16)
    quantize_int4(model)
    engine = _assert_int4_fused_exactly(model, tokenizer)
    attn = model.model.layers[0].self_attn
    packed = engine._fused.qkv[0].linear.weight.qdata
    rows = tuple(p.out_features for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    if int4_rows_concatenate(rows, model.config.hidden_size):  # else packed afresh: the next test
        assert attn.k_proj.weight.qdata.data_ptr() == packed[attn.q_proj.out_features].data_ptr()  # a view


def test_int4_projections_whose_rows_do_not_fill_packing_blocks_are_packed_afresh_when_fused(tiny):
    """ATen packs int4 rows in blocks (32 on AVX2, 64 on AVX-512) and lays a partial block out differently, so
    16-row key and value projections concatenated as packed after a 64-row query one read as other weights (the
    fused forward computed logits off by their whole range). The engine packs such fused rows from their 4-bit
    values instead: the same outputs, bit for bit."""
    pytest.importorskip("torchao")
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tokenizer = tiny
    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "max_position_embeddings": 64}
    config = LlamaConfig(vocab_size=len(tokenizer), num_attention_heads=4, num_key_value_heads=1, **sizes)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    quantize_int4(model)
    assert model.model.layers[0].self_attn.k_proj.out_features == 16
    assert not int4_rows_concatenate((64, 16, 16), 64)
    _assert_int4_fused_exactly(model, tokenizer)


def _assert_int4_fused_exactly(model, tokenizer) -> NativeEngine:
    """An engine over int4 ``model`` whose fused q/k/v and gate/up layers give the separate layers' outputs exactly
    and whose fused forward gives the model's own logits (to bf16 rounding, in another order: 0.035 seen)."""
    from leptonkit.serve.engine.kv_cache import BatchCache

    attn, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    x = torch.randn(3, 5, model.config.hidden_size, dtype=torch.bfloat16)
    with torch.inference_mode():
        separate = [torch.cat([p(x) for p in parts], -1) for parts in ((attn.q_proj, attn.k_proj, attn.v_proj),
                                                                       (mlp.gate_proj, mlp.up_proj))]  # fmt: skip
    engine = NativeEngine("tiny-int4", model, tokenizer)
    assert engine._fused is not None
    with torch.inference_mode():
        fused = [engine._fused.qkv[0](x), engine._fused.gate_up[0](x)]
    assert all(torch.equal(a, b) for a, b in zip(fused, separate, strict=True))
    ids = torch.tensor([tokenizer("To be, or not to be, that is")["input_ids"]])
    with torch.inference_mode():
        expected = model(ids).logits[:, -1].float()
        cache = BatchCache(model.config.num_hidden_layers, torch.float32)
        got = engine._fused(ids, torch.arange(ids.shape[1])[None], cache, torch.ones_like(ids))
    assert got.argmax(-1).tolist() == expected.argmax(-1).tolist()
    torch.testing.assert_close(got, expected, rtol=0.05, atol=0.1)
    return engine


def test_one_token_prompts_are_prefilled_together_then_decoded_like_generate(tiny):
    model, tokenizer = tiny
    prompts = [tokenizer(word)["input_ids"] for word in ("The", "Once", "Lily")]
    assert [len(ids) for ids in prompts] == [1, 1, 1]
    with torch.inference_mode():
        out = model.generate(torch.tensor(prompts), max_new_tokens=12, min_new_tokens=12, do_sample=False)
    assert_diverse(out[:, 1:].tolist())
    assert asyncio.run(_decode_together(NativeEngine("tiny", model, tokenizer), prompts, 12)) == out[:, 1:].tolist()


def _generate_each(model: torch.nn.Module, prompts: list[list[int]], n: int) -> list[list[int]]:
    """``n`` greedy tokens per prompt from ``transformers.generate``, one prompt at a time."""
    with torch.inference_mode():
        outs = [
            model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False) for ids in prompts
        ]
    return [out[0, len(ids) :].tolist() for out, ids in zip(outs, prompts, strict=True)]


async def _decode_together(engine: NativeEngine, prompts: list[list[int]], n: int) -> list[list[int]]:
    """``n`` greedy tokens per prompt, all queued before the engine starts, so they are prefilled in one batch."""
    params = SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)
    streams = [engine.generate(ids, params) for ids in prompts]
    await engine.start()
    try:
        done = await asyncio.gather(*(collect(stream) for stream in streams))
    finally:
        await engine.stop()
    return [[t for delta in deltas for t in delta.token_ids] for deltas in done]


def test_detokenizer_holds_back_partial_characters_and_stop_strings(tiny):
    _, tokenizer = tiny
    text = "ok 🙂 then STOP here"
    ids = tokenizer(text)["input_ids"]
    detok = Detokenizer(tokenizer, ["STOP"])
    pieces = []
    for token in ids:
        stopped = detok.add(token)
        piece = detok.take(final=stopped)
        assert "\ufffd" not in piece and "STOP" not in piece
        pieces.append(piece)
        if stopped:
            break
    assert stopped and "".join(pieces) == "ok 🙂 then "


def test_prefill_respects_the_token_budget(tiny, monkeypatch):
    """With a budget of 24 tokens per step, 8-token prompts are prefilled at most 24 - running tokens at a time."""
    model, tokenizer = tiny
    prefills: list[tuple[int, int]] = []  # (prompt tokens prefilled, sequences already running)
    original = NativeEngine._prefill

    def spy(self, seqs):
        prefills.append((sum(len(s.prompt_ids) for s in seqs), len(self._seqs)))
        return original(self, seqs)

    monkeypatch.setattr(NativeEngine, "_prefill", spy)

    async def run() -> None:
        engine = NativeEngine("tiny", model, tokenizer, max_num_seqs=16, max_batched_tokens=24)
        await engine.start()
        params = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
        streams = [engine.generate(list(range(10, 18)), params) for _ in range(8)]
        try:
            results = await asyncio.gather(*(collect(s) for s in streams))
        finally:
            await engine.stop()
        assert all(r[-1].completion_tokens == 6 for r in results)

    asyncio.run(run())
    assert sum(tokens for tokens, _ in prefills) == 64
    assert all(tokens <= 24 - running for tokens, running in prefills)
    assert len(prefills) >= 3


def test_a_step_starts_once_the_event_loop_has_sent_the_previous_steps_tokens(tiny, monkeypatch):
    """Each consumer blocks the loop for 5 ms a token (as an SSE write would): every step but the first waits until
    both streams have taken their tokens, so no consumer falls behind and gets tokens merged into one delta (without
the wait: two deltas each, of 2 and 6 tokens)."""
    model, tokenizer = tiny
    events: list[str] = []
    original = NativeEngine._forward

    def step(self, *args):
        events.append("step")
        return original(self, *args)

    monkeypatch.setattr(NativeEngine, "_forward", step)
    engine = NativeEngine("tiny", model, tokenizer)
    params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)

    async def consume(stream) -> list[int]:
        sizes = []
        async for delta in stream:
            time.sleep(0.005)
            events.append("sent")
            sizes.append(len(delta.token_ids))
        return sizes

    async def run() -> list[list[int]]:
        streams = [engine.generate(tokenizer(p)["input_ids"], params) for p in TWO_PROMPTS]  # one prefill
        consumers = [asyncio.ensure_future(consume(s)) for s in streams]
        await asyncio.sleep(0)  # both wait on their streams before the engine's first step
        await engine.start()
        try:
            return await asyncio.gather(*consumers)
        finally:
            await engine.stop()

    # the first iteration prefills both and decodes one step: two tokens each, then one a step
    assert asyncio.run(run()) == [[2] + [1] * 6] * 2
    assert events == ["step", "step", "sent", "sent"] + ["step", "sent", "sent"] * 6


def test_sliding_window_models_are_refused_with_a_hint(tiny):
    from transformers import MistralConfig, MistralForCausalLM

    from leptonkit.errors import InvalidInputError

    config = MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1)
    config.num_attention_heads, config.num_key_value_heads, config.sliding_window = 2, 1, 8
    with pytest.raises(InvalidInputError, match="--engine vllm"):
        NativeEngine("mistral", MistralForCausalLM(config), tiny[1])


def test_packed_bf16_linears_compute_what_plain_ones_do(trained_generator):
    plain = AutoModelForCausalLM.from_pretrained(trained_generator, dtype=torch.bfloat16).eval()
    packed = AutoModelForCausalLM.from_pretrained(trained_generator, dtype=torch.bfloat16).eval()
    count = pack_linears(packed)
    if count == 0:
        pytest.skip("oneDNN packed bf16 linears need a CPU with bf16 instructions (AVX-512 BF16, AMX)")
    linears = sum(type(m) is torch.nn.Linear for m in plain.modules())
    assert count == linears and not any(type(m) is torch.nn.Linear for m in packed.modules())
    ids = torch.randint(5, 400, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = plain(ids).logits.float()
        assert torch.allclose(expected, packed(ids).logits.float(), atol=1e-2, rtol=1e-2)
        # a deep copy (explanations copy served encoders) packs its own weights again
        assert torch.allclose(expected, copy.deepcopy(packed)(ids).logits.float(), atol=1e-2, rtol=1e-2)
    with torch.enable_grad():  # with autograd on, the plain op runs, so gradients flow
        packed(ids).logits.sum().backward()
    assert packed.model.layers[0].mlp.down_proj.weight.grad is not None
    assert pack_linears(AutoModelForCausalLM.from_pretrained(trained_generator)) == 0  # fp32 layers stay as they are


def test_packed_linear_rows_are_padded_to_few_shapes():
    sizes = [bucket(rows) for rows in range(1, 4097)]
    assert all(size >= rows and size - rows <= rows / 8 for rows, size in enumerate(sizes, start=1))
    assert len(set(sizes[2048:])) == 8  # one octave (2049..4096 rows) compiles eight shapes, not 2,048


def test_mixed_lora_batch_decodes_like_peft_for_each_adapter(trained_generator, trained_adapters):
    from peft import PeftModel

    tiny_generator, tiny_adapters = trained_generator, trained_adapters
    tokenizer = AutoTokenizer.from_pretrained(tiny_generator)
    prompts = ["Hello world", "To be, or not to be", "All the world's a stage", "ça va"]
    adapters = ["first", None, "second", "first"]
    expected = []
    with torch.inference_mode():
        for prompt, adapter in zip(prompts, adapters, strict=True):
            model = AutoModelForCausalLM.from_pretrained(tiny_generator).eval()
            if adapter:
                model = PeftModel.from_pretrained(model, tiny_adapters[adapter == "second"]).eval()
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
            out = model.generate(ids, max_new_tokens=10, min_new_tokens=10, do_sample=False)
            expected.append(out[0, ids.shape[1] :].tolist())
    assert_diverse(expected)
    assert expected[0] != expected[1] != expected[2]  # the adapters visibly change the output

    async def run() -> list[list[int]]:
        model = AutoModelForCausalLM.from_pretrained(tiny_generator).eval()
        engine = NativeEngine("tiny", model, tokenizer)
        assert engine._fused is not None  # LoRA on q/v lands on slices of the fused q/k/v projection
        fused, v_proj = engine._fused.qkv[0].linear.weight, model.model.layers[0].self_attn.v_proj.weight
        assert v_proj.untyped_storage().data_ptr() == fused.untyped_storage().data_ptr()  # a view, not a copy
        await engine.start()
        try:
            await engine.add_adapter("first", str(tiny_adapters[0]))
            await engine.add_adapter("second", str(tiny_adapters[1]))
            params = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)
            streams = [
                collect(engine.generate(tokenizer(p)["input_ids"], params, adapter=a))
                for p, a in zip(prompts, adapters, strict=True)
            ]
            results = await asyncio.gather(*streams)
        finally:
            await engine.stop()
        return [[t for delta in deltas for t in delta.token_ids] for deltas in results]

    assert asyncio.run(run()) == expected


def test_adapters_other_than_plain_lora_are_refused_with_a_hint(tiny_generator, tmp_path):
    from peft import IA3Config, get_peft_model

    model = AutoModelForCausalLM.from_pretrained(tiny_generator)
    get_peft_model(model, IA3Config(target_modules=["k_proj", "v_proj"], feedforward_modules=[])).save_pretrained(
        tmp_path
    )
    engine = NativeEngine(
        "tiny", AutoModelForCausalLM.from_pretrained(tiny_generator), AutoTokenizer.from_pretrained(tiny_generator)
    )
    with pytest.raises(InvalidInputError, match="plain LoRA") as caught:
        engine._add_adapter("ia3", str(tmp_path))
    assert "merge" in caught.value.hint


def test_one_token_attention_over_a_bf16_cache_matches_float32():
    """A 16-bit cache on a CPU (the compiled engine's) is attended without matmuls; grouped heads and the mask's
    -inf columns behave as in the float32 path."""
    from leptonkit.serve.engine.kv_cache import attention_bias, one_token_attention

    torch.manual_seed(0)
    rows, heads, kv_heads, columns, dim = 3, 4, 2, 7, 8
    query = torch.randn(rows, heads, 1, dim)
    keys, values = torch.randn(rows, kv_heads, columns, dim), torch.randn(rows, kv_heads, columns, dim)
    mask = torch.ones(rows, 1, 1, columns, dtype=torch.bool)
    mask[0, ..., :3] = False  # left padding of the first row
    bf16 = [t.bfloat16() for t in (query, keys, values)]
    expected = one_token_attention(*[t.float() for t in bf16], attention_bias(mask, kv_heads, 2, torch.float32), 0.3)
    got = one_token_attention(*bf16, attention_bias(mask, kv_heads, 2, torch.bfloat16), 0.3)
    assert got.dtype == torch.bfloat16 and got.shape == (rows, 1, heads, dim)
    torch.testing.assert_close(got.float(), expected, rtol=0.01, atol=0.01)
    # the padded columns get no weight: changing them changes nothing
    bf16[1][0, :, :3], bf16[2][0, :, :3] = 100.0, -100.0
    again = one_token_attention(*bf16, attention_bias(mask, kv_heads, 2, torch.bfloat16), 0.3)
    torch.testing.assert_close(again, got)


def test_an_unseeded_request_draws_a_seed_of_its_own_and_leaves_the_global_generator_alone():
    from leptonkit.serve.engine.sampling import make_generator

    state = torch.get_rng_state()
    first, second = (make_generator(SamplingParams(max_tokens=1)) for _ in range(2))
    assert torch.equal(torch.get_rng_state(), state)  # a custom service's torch.manual_seed still holds
    assert first is not None and second is not None and first.initial_seed() != second.initial_seed()
    assert make_generator(SamplingParams(max_tokens=1, seed=7)).initial_seed() == 7
    assert make_generator(SamplingParams(max_tokens=1, temperature=0)) is None


def test_an_int8_head_computes_its_dequantised_rows_product_and_keeps_each_row_within_half_a_step():
    from leptonkit.registry.int8_linear import Int8Linear

    weight = torch.randn(96, 64, dtype=torch.bfloat16)
    head = Int8Linear.quantize(weight)
    rows = head.weight_int8.float() * head.scales.float()[:, None]
    assert (rows - weight.float()).abs().le(head.scales.float()[:, None] * 0.501).all()
    x = torch.randn(3, 5, 64, dtype=torch.bfloat16)
    out = head(x)
    assert out.shape == (3, 5, 96) and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), x.float() @ rows.T, rtol=0.02, atol=0.05)


def test_an_int8_head_on_rows_that_are_not_64_byte_aligned_keeps_an_aligned_copy():
    """An int4 version's head comes from a safetensors file at an 8-byte offset; ATen's AVX-512 int8 kernel
    crashed the process (SIGSEGV) on such rows."""
    from leptonkit.registry.int8_linear import Int8Linear

    made = Int8Linear.quantize(torch.randn(96, 64, dtype=torch.bfloat16))
    buffer = torch.empty(made.weight_int8.numel() + 64, dtype=torch.int8)
    offset = next(i for i in range(8, 64) if (buffer.data_ptr() + i) % 64)
    unaligned = buffer[offset : offset + made.weight_int8.numel()].view_as(made.weight_int8)
    unaligned.copy_(made.weight_int8)
    head = Int8Linear(unaligned, made.scales)
    assert head.weight_int8.data_ptr() % 64 == 0 and torch.equal(head.weight_int8, made.weight_int8)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    assert torch.equal(head(x), made(x))
