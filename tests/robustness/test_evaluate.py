"""Evaluation under perturbation on real SST-2 sentences (tests/samples), with a tiny random BERT and the uncased
MiniLM tokenizer."""

from __future__ import annotations

import csv
import json

import pytest

from leptonkit.errors import InvalidInputError
from leptonkit.train.robustness import evaluate_robustness
from tests.conftest import sample, tiny_bert_config

LABELS = ["0", "1"]


@pytest.fixture
def sentiment(registry) -> str:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from leptonkit.registry.store import builtin_source

    torch.manual_seed(0)
    config = tiny_bert_config(LABELS, max_position_embeddings=128)
    tokenizer = AutoTokenizer.from_pretrained(builtin_source("builtin:minilm")[0])
    model = BertForSequenceClassification(config).eval()
    return registry.register(model, name="sentiment", task="classification", tokenizer=tokenizer).ref


def _prepared(tmp_path, rows: list[dict]):
    folder = tmp_path / "sst2"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "manifest.json").write_text(json.dumps({"content_hash": "test-slice", "task": "classification"}))
    return folder


def _sst2_rows(limit: int) -> list[dict]:
    with sample("sst2", "dev.tsv").open(encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [{"text": text.strip(), "label": label} for text, label in list(reader)[:limit]]


def test_clean_and_perturbed_metrics_with_drops(sentiment, registry, tmp_path):
    data = _prepared(tmp_path, _sst2_rows(64))
    report = evaluate_robustness(sentiment, data, ["typos", "case", "synonyms"], rate=0.3, registry=registry)
    assert report["n"] == 64 and report["task"] == "classification" and report["rate"] == 0.3
    clean = report["metrics"]
    assert set(clean) == {"accuracy", "macro_f1"}
    for kind, result in report["perturbed"].items():
        assert result["drop"] == {k: pytest.approx(clean[k] - result["metrics"][k]) for k in clean}
        assert result["changed"] > 20, kind
    # the MiniLM tokenizer lower-cases: a case change is invisible to the model, so nothing may drop
    assert report["perturbed"]["case"]["drop"] == {"accuracy": 0.0, "macro_f1": 0.0}
    stored = registry.get(sentiment).metrics
    assert stored["test"] == clean
    assert stored["test_perturbed"]["typos"] == report["perturbed"]["typos"]["metrics"]


def test_bad_rate_fails_before_loading(sentiment, registry, tmp_path):
    with pytest.raises(InvalidInputError, match="rate must be in"):
        evaluate_robustness(sentiment, tmp_path, ["typos"], rate=0.0, registry=registry)


def test_cli_eval_perturb_prints_clean_and_perturbed_metrics(sentiment, cli, tmp_path):
    data = _prepared(tmp_path, _sst2_rows(16))
    ok = cli("eval", sentiment, "--data", str(data), "--perturb", "punctuation,case", "--rate", "0.5", "--json")
    assert ok.returncode == 0, ok.stderr
    report = ok.json()
    assert report["n"] == 16 and list(report["perturbed"]) == ["punctuation", "case"]
    assert report["perturbed"]["case"]["drop"]["accuracy"] == 0.0
