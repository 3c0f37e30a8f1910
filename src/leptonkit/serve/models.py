"""The models one server process serves: generators (an engine each), encoders, and the adapters on generators.

Each model is served under its registry name (``tiny`` for ``tiny:3``) or its folder name; a request's ``model`` may
also be the pinned ref, ``BASE:ADAPTER``, or an adapter's own name.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leptonkit.errors import InvalidInputError, NotFoundError
from leptonkit.monitor import metrics
from leptonkit.registry import Registry
from leptonkit.registry.quantized import quantization_info
from leptonkit.serve.adapters import AdapterManager
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.engine import placement, torch_threads
from leptonkit.serve.engine.encoder import EncoderEngine
from leptonkit.versions import cpu_supports_bf16

if TYPE_CHECKING:
    import torch

GENERATION = "generation"


@dataclass
class Target:
    """What a request's ``model`` names: a generator engine (with an adapter or not) or an encoder."""

    name: str
    engine: Any = None
    adapter: str | None = None
    encoder: EncoderEngine | None = None


def torch_dtype(name: str) -> Any:
    """``auto`` is bfloat16 where the CPU (or GPU) computes it natively, float32 elsewhere."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if torch.backends.mkldnn.is_available() and cpu_supports_bf16() else torch.float32
    return getattr(torch, name)


class ModelSet:
    def __init__(self, config: ServeConfig, registry: Registry, engine_threads: int) -> None:
        self.config = config
        self.registry = registry
        self.generators: dict[str, Any] = {}
        self.encoders: dict[str, EncoderEngine] = {}
        self.refs: dict[str, str] = {}  # served name -> pinned ref or folder
        self.tasks: dict[str, str] = {}
        self.created = int(time.time())
        self.adapters = AdapterManager(registry, self.generators, {}, config.max_adapters)
        self.engine_threads = engine_threads  # torch threads of each engine's own thread

    @classmethod
    async def load(cls, config: ServeConfig) -> ModelSet:
        default_threads = torch_threads.serial()  # from here on, this thread runs torch ops on one thread
        models = cls(config, Registry(config.home), config.threads or default_threads)
        try:
            for ref in config.models:
                await models._load_one(ref)
            for name, ref in config.adapters.items():
                await models.adapters.add(models.adapters.describe(ref, name))
        except BaseException:
            await models.close()
            raise
        return models

    async def _load_one(self, ref: str) -> None:
        is_folder = Path(ref).expanduser().is_dir()
        version = None if is_folder or ref.startswith("builtin:") else self.registry.get(ref)
        name = version.name if version else Path(ref).name or ref
        if name in self.refs:
            # A second version of a served name (side by side, A/B): served under its pinned ref ("name:3"); the
            # bare name stays with the version listed first.
            if version is None or version.ref in self.refs.values():
                raise InvalidInputError(f"model {ref} is served twice", hint="list each model version once")
            name = version.ref
        quantized = quantization_info(self.registry.resolve(ref)) is not None
        # a quantised version runs in the dtype it was quantised in (int4: bfloat16, its kernel's) unless asked
        dtype = None if quantized and self.config.dtype == "auto" else torch_dtype(self.config.dtype)
        loaded = await asyncio.to_thread(_load_serially, ref, self.registry, dtype)
        self.refs[name] = version.ref if version else str(ref)
        self.tasks[name] = loaded.task or "embedding"
        metrics.MODEL_MEMORY.labels(name).set(_weight_bytes(loaded.model))
        if loaded.task == GENERATION:
            engine = self._generation_engine(name, loaded)
            await engine.start()
            self.generators[name] = engine
            if version:
                self.adapters.served_refs[name] = version.ref
        else:
            encoder = EncoderEngine(
                name,
                loaded,
                max_batch=self.config.encoder_max_batch,
                max_wait_ms=self.config.encoder_max_wait_ms,
                threads=self.engine_threads,
            )
            await encoder.start()
            self.encoders[name] = encoder

    def _generation_engine(self, name: str, loaded: Any) -> Any:
        from leptonkit.serve.engine import vllm

        if loaded.tokenizer.pad_token is None:
            loaded.tokenizer.pad_token = loaded.tokenizer.eos_token
        if vllm.chosen(self.config):
            return vllm.VllmEngine(name, loaded, self.config)
        vllm.check_parallel(self.config)
        import torch

        from leptonkit.serve.engine.generate import NativeEngine

        if torch.cuda.is_available():  # on GPU 0, or split across GPUs when it does not fit one
            loaded.model = placement.place(loaded.model)
        return NativeEngine(
            name,
            loaded.model,
            loaded.tokenizer,
            max_num_seqs=self.config.max_num_seqs,
            max_queue=self.config.max_queue,
            max_batched_tokens=self.config.max_batched_tokens,
            threads=self.engine_threads,
            compile=self.config.compile,
        )

    async def close(self) -> None:
        for engine in [*self.generators.values(), *self.encoders.values()]:
            await engine.stop()

    def resolve(self, model: str) -> Target:
        """The engine a request's ``model`` names, or a 404 listing what is served."""
        for name in (*self.generators, *self.encoders):
            if model in (name, self.refs[name]):
                return Target(name, self.generators.get(name), None, self.encoders.get(name))
        base, sep, adapter = model.partition(":")
        if sep and base in self.generators and self._adapter_base(adapter) == base:
            return Target(model, self.generators[base], adapter)
        if model in self.adapters.known:
            return Target(model, self.generators[self.adapters.known[model].base], model)
        served = [*self.generators, *self.encoders, *self.adapters.known]
        raise NotFoundError(f"model {model} is not served here", hint=f"served: {', '.join(served)}", param="model")

    def _adapter_base(self, adapter: str) -> str | None:
        known = self.adapters.known.get(adapter)
        return known.base if known else None

    def listing(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: base models first, then adapters with their parent."""
        data = [
            {
                "id": name,
                "object": "model",
                "created": self.created,
                "owned_by": "leptonkit",
                "root": self.refs[name],
                "parent": None,
                "task": self.tasks[name],
            }
            for name in self.refs
        ]
        data += [
            {
                "id": a.name,
                "object": "model",
                "created": a.created,
                "owned_by": "leptonkit",
                "root": a.ref,
                "parent": a.base,
                "task": GENERATION,
            }
            for a in self.adapters.known.values()
        ]
        return data


def _load_serially(ref: str, registry: Registry, dtype: Any) -> Any:
    """Load a model in a worker thread that runs torch ops on one thread (see ``engine.torch_threads``)."""
    from leptonkit.registry.loading import load_model

    torch_threads.serial()
    return load_model(ref, registry=registry, dtype=dtype)


def _weight_bytes(model: Any) -> int:
    """Memory a loaded model's parameters and buffers hold (``leptonkit_model_memory_bytes``)."""
    return sum(_tensor_bytes(t.data) for t in [*model.parameters(), *model.buffers()])


def _tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes ``tensor`` holds. A torchao quantised weight is a tensor subclass whose logical shape and dtype are the
    float weight's; it holds its packed data and scales as inner tensors, which its ``__tensor_flatten__`` names."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is None:
        return tensor.numel() * tensor.element_size()
    names, _ = flatten()
    return sum(_tensor_bytes(getattr(tensor, name)) for name in names)
