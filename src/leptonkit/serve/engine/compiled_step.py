"""The one-token decode step of a Llama-family model compiled by ``torch.compile`` (inductor): ``serve --compile``.

Eager PyTorch runs a decode step as about a thousand small ops, each paying Python and dispatcher overhead; on a
CPU, where there are no CUDA graphs, that overhead is most of a small model's step. Inductor fuses the elementwise
ops (norms, rotary embedding, activations, softmax) into a few C++ loops and, with ``freezing``, prepacks the
weights for oneDNN. Measured on the 17M benchmark Llama on this 2-CPU machine, without HTTP, at 92 cached columns:
one sequence 1.8-2.6 ms a step instead of 3.1-3.4 ms eagerly, 32 sequences 5.4-6.2 ms instead of 8.0-8.5 ms. vLLM
compiles its CPU models the same way.

The compiled graph never writes to the KV cache, so the engine's cache stays the eager one: it reads the slabs (the
columns written so far, masked by an additive bias) and returns each layer's new key and value, which the caller
appends. The new token attends to itself through a separate score joined to the cached ones before the softmax.
At 32 sequences a step's attention reads megabytes of cache per layer and is bound by memory bandwidth, so with a
compiled step the engine keeps the cache in the model's dtype (bf16: half the bytes of the eager engine's float32
cache) and attention is a broadcast multiply and sum that inductor compiles into loops reading the cache once, with
float32 accumulation: 230 us a layer instead of 600 us for a float32 cache through two batched matmuls, and no oneDNN
kernel per shape.
Batch size and cache capacity are dynamic: one graph for a single sequence (PyTorch specialises size 1) and one for
the rest, both compiled by :meth:`CompiledStep.warm_up` before the server is ready (about 30 s for that model). The
warm-up then runs the graph once at every batch size up to the engine's ``max_num_seqs`` (1.4 s for that model),
so that no per-shape first-call cost falls on the first loaded minute. Evidence is mixed: in one in-process run (17M
model, 5 rounds of 64 requests at 32 concurrent) the first round ran at 899 tok/s against 1,020-1,080 later with the
old warm-up (batch sizes 1 and 2) and at 1,115 against 1,126-1,172 with this one; in the recorded run
(``benchmarks/results/serve_warmup.json``) both were flat (first round 1.04x the later median).

torchao's CPU int4 weights (``models quantize --method int4``) compile too: inductor calls their kernel and fuses
the bf16 work around it. SmolLM2-135M int4, one stream, in-process: 16-17 ms a token against 38-42 ms eagerly;
compiling its 30 layers and warming up 4 batch sizes took 5 minutes.

torchao's W8A8 weights (``models quantize --method w8a8``, the LM head's included) enter the step as their int8 rows
and row scales, and each projection is written in PyTorch's decomposed quantisation ops
(``int8_dynamic.decomposed_linear``), which freezing turns into oneDNN's int8 matmul on prepacked weights, with the
activations' quantisation fused into the loops around it. SmolLM2-135M, 32 streams of 128 tokens, in process (dev,
no results file): 894-908 tok/s against 775-798 for its bf16 weights compiled, a decode step 28 ms against 31 ms and
the 32 prompts' prefill 0.90 s against 1.22 s; with the head in int8 too, a step took 24.2-25.9 ms against
26.7-27.8 ms with it in bf16 (two runs each, dev).

Results match the eager step to bf16 rounding, not bit for bit (fused loops add in another order), so greedy
outputs can differ from ``transformers.generate`` where two tokens' logits nearly tie. Prompts (prefill) and steps
with LoRA adapters run eagerly.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable

import torch

from leptonkit.serve.engine.fused_decoder import FusedDecoder, frozen
from leptonkit.serve.engine.int8_dynamic import decomposed_linear, is_dynamic_int8, row_scales
from leptonkit.serve.engine.kv_cache import BatchCache, attention_bias, cached_scores, weighted_values
from leptonkit.serve.engine.multi_lora import MultiLoraLinear

log = logging.getLogger(__name__)

ROPE_TYPES = ("default", "linear", "llama3")  # a position's rotation depends on that position alone


def compiled_step(fused: FusedDecoder, context: int, max_rows: int = 2) -> CompiledStep | None:
    """A warmed-up :class:`CompiledStep` over ``fused``'s model, or None (logged) where it cannot be compiled."""
    inner = fused.model[0].model
    rope_type = getattr(inner.rotary_emb, "rope_type", "default")
    if rope_type not in ROPE_TYPES:
        log.warning("not compiling the decode step: rotary embedding type %s is not supported", rope_type)
        return None
    unbiased = [_linear(m) for layer in inner.layers for m in (layer.self_attn.o_proj, layer.mlp.down_proj)]
    if any(linear.bias is not None for linear in [*unbiased, *(f.linear for f in fused.gate_up)]):
        log.warning("not compiling the decode step: biases on o_proj or the MLP are not supported")
        return None
    try:
        step = CompiledStep(fused, context)
        step.warm_up(max_rows=max_rows)
    except Exception as err:  # no C++ compiler, an unsupported op: eager still works
        log.warning("not compiling the decode step, running it eagerly: %s: %s", type(err).__name__, err)
        return None
    return step


def _own_guards(step: CompiledStep) -> Callable[[list], list[bool]]:
    """A ``guard_filter_fn`` for ``step``: keep dynamo's guards on the inputs, on torch's global state (grad mode,
    the symbolic shapes...) and on the identity of ``step``'s first weight; drop those on the rest of the module
    and on the Python globals its code reads.

    Why: a call checked about 2,200 guards, nearly all on this module's attributes and submodules (every norm's
    ``__dict__`` and hook dictionaries): 0.4 ms of a 5-10 ms one-sequence SmolLM2 step (dev profile, in process).
    They cannot fail: the module is built once, private to its engine, and never changed, and ``freezing`` compiles
    its weights in as constants, so a changed weight would go unseen with or without them. The one identity guard
    is kept as a check: dynamo keeps its graphs per code object, and each step has its own (:func:`_own_code`); were
    two steps to share one, a second model of the same shapes in the process would run the first one's frozen
    weights. A changed input (shape, dtype, stride, number of cache slabs) still selects another graph or recompiles.
    """
    anchor = step.qkv[0]

    def keep(entries: list) -> list[bool]:
        identity = [entry.guard_type == "ID_MATCH" and entry.value is anchor for entry in entries]
        if not any(identity):  # a torch that guards weights otherwise: compiled_step falls back to eager
            raise RuntimeError("dynamo set no identity guard on the step's weights")
        return [own or not entry.name.startswith(("self", "G[")) for own, entry in zip(identity, entries, strict=True)]

    return keep


def _own_code(step: CompiledStep) -> None:
    """Give ``step`` a ``forward`` of its own code object (an otherwise identical class).

    Dynamo keeps its graphs, and counts recompilations against ``recompile_limit`` (8), per code object. Steps sharing
    ``CompiledStep.forward`` shared that count: each model adds two graphs (one row, several), so from the fifth
    compiled model in a process dynamo stopped compiling and the step ran eagerly, silently (seen in the tests: a
    W8A8 step that ran its decomposed ops one by one). With a code object each, every step has its own graphs and
    count, and a call looks up only its own graphs."""
    forward = CompiledStep.forward
    own = types.FunctionType(
        forward.__code__.replace(), forward.__globals__, forward.__name__, forward.__defaults__, forward.__closure__
    )
    own.__doc__, own.__qualname__ = forward.__doc__, forward.__qualname__
    step.__class__ = type(CompiledStep.__name__, (CompiledStep,), {"forward": own, "__module__": __name__})


def _linear(module: torch.nn.Module) -> torch.nn.Linear:
    """The base linear layer under a LoRA wrapper (adapters run eagerly)."""
    return module.base if isinstance(module, MultiLoraLinear) else module


class CompiledStep(torch.nn.Module):
    """``forward(ids, positions, bias, caches)`` -> (last logits as float32, [new key, new value] per layer).

    ``ids`` and ``positions`` are ``[rows, 1]``; ``caches`` the layers' key and value slabs in turn
    (``[rows, kv_heads, capacity, head_dim]``); ``bias`` ``[rows x kv_heads, groups, capacity]`` is 0 on the
    columns to attend and -inf elsewhere, the new token's own column included (it is not written yet).
    """

    def __init__(self, fused: FusedDecoder, context: int) -> None:
        super().__init__()
        model = fused.model[0]
        inner = model.model
        layers = inner.layers
        # the model's own modules and parameters, shared: freezing treats their weights as constants
        modules, params = torch.nn.ModuleList, torch.nn.ParameterList
        self.norm_in = modules(layer.input_layernorm for layer in layers)
        self.norm_post = modules(layer.post_attention_layernorm for layer in layers)
        self.embed, self.norm_out, self.act = inner.embed_tokens, inner.norm, layers[0].mlp.act_fn
        groups = {
            "qkv": [f.linear for f in fused.qkv],
            "gate_up": [f.linear for f in fused.gate_up],
            "o_proj": [_linear(layer.self_attn.o_proj) for layer in layers],
            "down": [_linear(layer.mlp.down_proj) for layer in layers],
        }
        # W8A8 weights (int8_dynamic) enter as their int8 rows and row scales, which freezing packs for oneDNN; so
        # does a W8A8 head, otherwise the head runs as the module it is (a Linear, or an int4 version's Int8Linear)
        head = model.lm_head
        if isinstance(head, torch.nn.Linear) and is_dynamic_int8(head.weight.data):
            groups["head"] = [head]
        else:
            self.lm_head = head
        self.int8 = {name for name, linears in groups.items() if is_dynamic_int8(linears[0].weight.data)}
        for name, linears in groups.items():
            weights = [linear.weight.data for linear in linears]
            if name in self.int8:
                setattr(self, f"{name}_scale", params([frozen(row_scales(w)) for w in weights]))
                weights = [w.qdata for w in weights]
            setattr(self, name, params([frozen(w) for w in weights]))
        sizes = {linear.out_features for name in self.int8 for linear in groups[name]}
        self.zeros = {size: torch.zeros(size, dtype=torch.long) for size in sizes}  # W8A8 weights' zero points
        self.qkv_bias = params([f.linear.bias for f in fused.qkv if f.linear.bias is not None]) or None
        self.scaling = layers[0].self_attn.scaling
        self.heads, self.kv_heads, self.head_dim = fused.heads, fused.kv_heads, fused.head_dim
        with torch.inference_mode():
            weight = self.embed.weight
            cos, sin = inner.rotary_emb(weight[:1], torch.arange(context, device=weight.device)[None])
        half = self.head_dim // 2
        self.register_buffer("cos", cos[0], persistent=False)
        # rotate_half(x) * sin == flip(x's halves) * sin with the first half negated
        self.register_buffer("sin", torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1), persistent=False)
        _own_code(self)
        # not a submodule (it wraps this module): set around nn.Module's attribute registration
        compiled = torch.compile(self, dynamic=True, options={"guard_filter_fn": _own_guards(self)})
        object.__setattr__(self, "compiled", compiled)

    def forward(
        self, ids: torch.Tensor, positions: torch.Tensor, bias: torch.Tensor, caches: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        rows, heads, kv_heads, dim = ids.shape[0], self.heads, self.kv_heads, self.head_dim
        groups = heads // kv_heads
        hidden = self.embed(ids)
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        new: list[torch.Tensor] = []
        for index in range(len(self.qkv)):
            keys, values = caches[2 * index], caches[2 * index + 1]
            capacity = keys.shape[2]
            bias_qkv = self.qkv_bias[index] if self.qkv_bias is not None else None
            qkv = self._linear(self.norm_in[index](hidden), "qkv", index, bias_qkv)
            qkv = qkv.view(rows, 1, heads + 2 * kv_heads, dim).transpose(1, 2)
            qk = qkv[:, : heads + kv_heads]
            qk = qk * cos + qk.unflatten(-1, (2, dim // 2)).flip(-2).flatten(-2) * sin
            key, value = qk[:, heads:].to(keys.dtype), qkv[:, heads + kv_heads :].to(values.dtype)
            new += [key, value]
            query = qk[:, :heads].float().reshape(rows * kv_heads, groups, dim)
            flat_key, flat_value = key.reshape(rows * kv_heads, 1, dim), value.reshape(rows * kv_heads, 1, dim)
            scores = cached_scores(query, keys.reshape(rows * kv_heads, capacity, dim)) * self.scaling + bias
            own = (query * flat_key).sum(-1, keepdim=True) * self.scaling
            probs = torch.softmax(torch.cat([scores, own], dim=-1), dim=-1)
            out = weighted_values(probs[..., :capacity], values.reshape(rows * kv_heads, capacity, dim))
            out = (out + probs[..., capacity:] * flat_value).reshape(rows, 1, heads * dim).to(hidden.dtype)
            hidden = hidden + self._linear(out, "o_proj", index)
            gate, up = self._linear(self.norm_post[index](hidden), "gate_up", index).chunk(2, dim=-1)
            hidden = hidden + self._linear(self.act(gate) * up, "down", index)
        last = self.norm_out(hidden[:, -1])
        logits = self._linear(last, "head", 0) if "head" in self.int8 else self.lm_head(last)
        return logits.float(), new

    def _linear(self, x: torch.Tensor, group: str, index: int, bias: torch.Tensor | None = None) -> torch.Tensor:
        weight = getattr(self, group)[index]
        if group not in self.int8:
            return torch.nn.functional.linear(x, weight, bias)
        scales = getattr(self, f"{group}_scale")[index]
        return decomposed_linear(x, weight, scales, self.zeros[weight.shape[0]], bias)

    def decode(self, ids: torch.Tensor, positions: torch.Tensor, cache: BatchCache, mask: torch.Tensor) -> torch.Tensor:
        """The engine's one-token step (its ``[rows, 1, 1, capacity]`` mask, the new column included): the last
        logits; the new keys and values are appended to ``cache``."""
        earlier = mask.clone()
        earlier[..., cache.columns] = False  # the new token's column is scored separately
        bias = attention_bias(earlier, self.kv_heads, self.heads // self.kv_heads, torch.float32)
        bias = bias.contiguous()  # the graphs were compiled for contiguous inputs (a stride is part of a guard)
        slabs = [slab for layer in cache.layers for slab in (layer.keys, layer.values)]
        logits, new = self.compiled(ids, positions, bias, slabs)
        for layer, key, value in zip(cache.layers, new[0::2], new[1::2], strict=True):
            layer.update(key, value)
        return logits

    def warm_up(self, capacity: int = 32, max_rows: int = 2) -> None:
        """Compile both graphs (one sequence, several) on zero inputs, then run them at every batch size up to
        ``max_rows``; raises where inductor cannot compile."""
        import torch._inductor.config
        import torch.fx.experimental._config as shapes

        device, dtype, groups = self.embed.weight.device, self.embed.weight.dtype, self.heads // self.kv_heads
        # Read when dynamo traces, so set around these first calls: freezing (weights as constants, prepacked), and
        # no "duck sizing", which would give the capacity the head size's symbol when they are equal (32 here),
        # specialising both graphs to that capacity.
        with torch.inference_mode(), torch._inductor.config.patch(freezing=True), shapes.patch(use_duck_shape=False):
            for rows in range(1, max(max_rows, 2) + 1):
                ids, positions = (torch.zeros(rows, 1, dtype=torch.long, device=device) for _ in range(2))
                bias = torch.zeros(rows * self.kv_heads, groups, capacity, device=device)
                shape = (rows, self.kv_heads, capacity, self.head_dim)
                caches = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(2 * len(self.qkv))]
                self.compiled(ids, positions, bias, caches)
