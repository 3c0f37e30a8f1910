"""Shared fixtures: an isolated LEPTONKIT_HOME per test, the real built-in encoder, the real CLI, tiny BERT configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "samples"
LEPTONKIT = [sys.executable, "-m", "leptonkit.cli.main"]


def sample(*parts: str) -> Path:
    """A data file shipped under ``tests/samples`` (see its README for sources and licenses)."""
    path = SAMPLES.joinpath(*parts)
    assert path.exists(), f"test sample missing: {path}"
    return path


def label_maps(labels: list[str]) -> dict:
    """``id2label`` and ``label2id`` for a Hugging Face config, in the order of ``labels``."""
    return {"id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)}}


def tiny_bert_config(labels: list[str] | None = None, **sizes: int):
    """A 1-layer, 32-wide ``BertConfig`` on MiniLM's 30,522-token vocabulary, with ``labels`` when given and
    ``sizes`` replacing any field: a model that builds and runs in moments with the real MiniLM tokenizer."""
    from transformers import BertConfig

    fields = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    if labels is not None:
        fields |= label_maps(labels)
    return BertConfig(**fields | sizes)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh LEPTONKIT_HOME for this test, for in-process code and subprocesses alike."""
    path = tmp_path / "home"
    monkeypatch.setenv("LEPTONKIT_HOME", str(path))
    return path


@pytest.fixture
def registry(home: Path):
    from leptonkit.registry import Registry

    return Registry(home)


@pytest.fixture
def minilm(registry) -> str:
    """The real all-MiniLM-L6-v2, registered as ``minilm:1``."""
    return registry.register("builtin:minilm", name="minilm").ref


@pytest.fixture
def cli(home: Path):
    """Run ``leptonkit ARGS...`` as a real subprocess against this test's home."""

    def run(*args: str, input: str | None = None, timeout: float = 300) -> CliResult:
        proc = subprocess.run(
            [*LEPTONKIT, *args], capture_output=True, text=True, input=input, timeout=timeout, env=os.environ.copy()
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run
