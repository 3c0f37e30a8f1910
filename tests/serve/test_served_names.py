"""Served names: two versions of one registered name are served side by side (the second under its pinned ref),
each answering with its own weights; the same version listed twice is refused at start."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import torch

from leptonkit.errors import InvalidInputError
from leptonkit.registry import Registry
from leptonkit.serve.config import ServeConfig
from leptonkit.serve.models import ModelSet
from tests.serve.conftest import serve_thread


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, tiny_encoders):
    """sentiment:1 and sentiment:2: the tiny classifier, and the same with its classifier bias moved to label 1."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    home = tmp_path_factory.mktemp("two-versions")
    registry = Registry(home)
    registry.register(str(tiny_encoders["sentiment"]), name="sentiment", task="classification")
    shifted = tmp_path_factory.mktemp("sentiment-shifted")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_encoders["sentiment"])
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([-5.0, 5.0]))
    model.save_pretrained(shifted)
    AutoTokenizer.from_pretrained(tiny_encoders["sentiment"]).save_pretrained(shifted)
    registry.register(str(shifted), name="sentiment", task="classification")
    registry.alias("sentiment:1", "prod")
    return home


def test_two_versions_of_a_name_are_served_side_by_side(two_versions):
    with serve_thread(models=["sentiment@prod", "sentiment:2"], home=str(two_versions), dtype="float32") as server:
        listed = httpx.get(f"{server.url}/v1/models").json()["data"]
        assert [(m["id"], m["root"]) for m in listed] == [("sentiment", "sentiment:1"), ("sentiment:2", "sentiment:2")]
        answers = {}
        for model in ("sentiment", "sentiment:1", "sentiment:2"):
            body = {"model": model, "input": "a fine film"}
            response = httpx.post(f"{server.url}/v1/classify", json=body, timeout=30)
            assert response.status_code == 200, response.text
            answers[model] = response.json()["data"][0]
    assert answers["sentiment"] == answers["sentiment:1"]
    assert answers["sentiment:2"]["label"] == "positive" and answers["sentiment:2"]["score"] > 0.99
    assert answers["sentiment:1"]["score"] < 0.99  # the unshifted head is not that sure


def test_the_same_version_twice_is_refused(two_versions):
    config = ServeConfig(models=["sentiment:1", "sentiment@prod"], home=str(two_versions), dtype="float32")
    with pytest.raises(InvalidInputError, match="sentiment@prod is served twice"):
        asyncio.run(ModelSet.load(config))
