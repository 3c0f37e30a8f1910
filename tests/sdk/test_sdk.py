"""The SDK objects end to end, as the product's documents show them: fine-tune from a raw file, load, alias, deploy
locally as a real ``leptonkit serve`` subprocess, predict through the client, stop; resource shapes; task inference."""

from __future__ import annotations

import json

import pytest

import leptonkit as lk
from leptonkit.errors import InvalidInputError
from tests.conftest import REPO

TICKETS = REPO / "examples" / "data" / "support_tickets.jsonl"  # the seeds' tickets.jsonl: text, label; with PII


def test_finetune_from_a_raw_file_then_deploy_locally_and_predict_through_the_client(home, tiny_bert_dir):
    labels = {json.loads(line)["label"] for line in TICKETS.read_text().splitlines()}
    model = lk.FineTuneModel(str(tiny_bert_dir), method="lora", resources="cpu.1x").train(
        TICKETS, name="tickets", max_steps=4, batch_size=16
    )
    assert (model.ref, model.task) == ("tickets:1", "classification")  # the task came from the labels
    manifest = model.lineage["data"]["manifest"]
    assert manifest["task"] == "classification" and manifest["sources"][0]["path"] == str(TICKETS)
    assert manifest["pii"]["types"]  # prepared with data prepare's defaults: personal data masked
    assert lk.load("tickets") is model and model.alias("prod") is model and lk.load("tickets@prod") is model
    texts = ["I was charged twice this month", "the app crashes when I upload a photo"]
    local = model.predict(texts)
    assert {r["label"] for r in local} <= labels
    with pytest.raises(InvalidInputError, match="tickets:1 is an adapter"):  # models quantize's own check
        model.quantize("int8")

    with lk.DeployModel("tickets@prod", resources="cpu.1x").deploy(backend="local") as deployment:
        assert deployment.status()["running"] is True
        served = deployment.client().classify(texts, model="tickets")
        process = deployment.process
    assert [r["label"] for r in served] == [r["label"] for r in local]
    assert [r["score"] for r in served] == pytest.approx([r["score"] for r in local], abs=1e-4)
    assert process.poll() is not None  # stopped with the block


def test_an_impossible_or_unknown_resource_shape_fails_before_any_work(home):
    job = lk.FineTuneModel("builtin:minilm", resources="gpu.1x")
    with pytest.raises(InvalidInputError, match="needs 1 GPU"):
        job.train(TICKETS, name="never")
    assert lk.Registry(home).list() == []  # nothing ran, nothing registered
    with pytest.raises(InvalidInputError, match=r"unknown resource shape 'cpu\.64x'"):
        lk.DeployModel("x", resources="cpu.64x")


def test_users_add_their_own_resource_shapes_in_the_config(home):
    from leptonkit.sdk.resources import resource_shape

    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text("resources:\n  cpu.3x: {cpus: 3, memory: 6Gi}\n")
    shape = resource_shape("cpu.3x")
    assert (shape.threads, shape.kubernetes()["requests"]) == (3, {"cpu": "3", "memory": "6Gi"})
    assert lk.DeployModel("x", resources="cpu.3x").config().threads == 3


def test_a_text_corpus_has_no_task_to_infer(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("just some text\nmore text\n")
    with pytest.raises(InvalidInputError, match="cannot tell the task"):
        lk.FineTuneModel("builtin:minilm").train(corpus, name="x")
