"""Fine-tuning fixtures: a tiny BERT (real MiniLM tokenizer) and small prepared slices of SST-2 and CoNLL-2003
(from the samples shipped in ``tests/samples``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import sample


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch):
    """One torch thread here and in subprocesses: tiny models gain nothing from two, and on a shared 2-core
    machine a second spinning thread per process makes every step several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer, saved as a Hugging Face folder: trains in seconds."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from leptonkit.registry.store import builtin_source

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(builtin_source("builtin:minilm")[0]).save_pretrained(folder)
    return folder


def _head(source: Path, target: Path, lines: int) -> Path:
    """The first ``lines`` lines of ``source``, cut at the next blank line for CoNLL files."""
    out = []
    with source.open(encoding="utf-8") as handle:
        for line in handle:
            out.append(line)
            if len(out) >= lines and (source.suffix == ".tsv" or not line.strip()):
                break
    target.write_text("".join(out), encoding="utf-8")
    return target


def _prepare(raw: list[Path], task: str, out: Path) -> Path:
    from leptonkit.data import prepare

    prepare([str(p) for p in raw], task=task, out=str(out), pii="off", dedup="off")
    return out


@pytest.fixture(scope="session")
def sst2_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of raw SST-2 tsv files: 160 training rows, 60 validation and 60 test rows (dev split in two)."""
    raw = tmp_path_factory.mktemp("sst2-raw")
    _head(sample("sst2", "train.tsv"), raw / "train.tsv", 161)
    dev_rows = sample("sst2", "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (raw / "valid.tsv").write_text("".join(dev_rows[:61]), encoding="utf-8")
    (raw / "test.tsv").write_text(dev_rows[0] + "".join(dev_rows[61:121]), encoding="utf-8")
    return raw


@pytest.fixture(scope="session")
def sst2_prepared(sst2_raw: Path) -> Path:
    """The same rows, prepared (no PII masking, no de-duplication)."""
    return _prepare(sorted(sst2_raw.glob("*.tsv")), "classification", sst2_raw.parent / f"{sst2_raw.name}-prepared")


@pytest.fixture(scope="session")
def conll_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 70 training sentences and 30 validation/test sentences of CoNLL-2003, prepared."""
    raw = tmp_path_factory.mktemp("conll-raw")
    files = [
        _head(sample("conll2003", name), raw / name, lines)
        for name, lines in (("train.txt", 1400), ("valid.txt", 500), ("test.txt", 500))
    ]
    return _prepare(files, "ner", raw.parent / "conll-prepared")
