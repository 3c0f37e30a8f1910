"""leptonkit: raw text and labels in, a served, versioned, monitored model out.

The public API is imported lazily so that ``import leptonkit`` stays fast and torch loads only when needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Registry": "leptonkit.registry.store",
    "ModelVersion": "leptonkit.registry.store",
    "finetune": "leptonkit.train.api",
    "pretrain": "leptonkit.train.api",
    "Client": "leptonkit.client",
    "Service": "leptonkit.serve.services.declare",
    "endpoint": "leptonkit.serve.services.declare",
    "sft": "leptonkit.train.api",
    "load": "leptonkit.sdk.model",
    "Model": "leptonkit.sdk.model",
    "PretrainModel": "leptonkit.sdk.training",
    "FineTuneModel": "leptonkit.sdk.training",
    "SFTModel": "leptonkit.sdk.training",
    "DeployModel": "leptonkit.sdk.deployment",
    "Deployment": "leptonkit.sdk.deployment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'leptonkit' has no attribute {name!r}")
