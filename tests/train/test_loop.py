"""The shared training loop on a tiny BERT and a slice of SST-2: resume, Ctrl-C, NaN, early stopping, logs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from leptonkit.train.batching import LengthGroupedBatchSampler
from leptonkit.train.loop import (
    BEST,
    METRIC_LOG,
    NonFiniteLossError,
    TrainingInterrupted,
    default_loss,
    load_trainable,
    train_loop,
)
from leptonkit.train.recipe import TrainSettings
from tests.conftest import sample

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def features() -> list[dict]:
    from transformers import AutoTokenizer

    from leptonkit.registry.store import builtin_source

    tokenizer = AutoTokenizer.from_pretrained(builtin_source("builtin:minilm")[0])
    with sample("sst2", "train.tsv").open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:48]
    return [
        dict(tokenizer(row["sentence"].strip(), truncation=True, max_length=32), labels=int(row["label"]))
        for row in rows
    ]


def tiny_model(seed: int = 0) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    return BertForSequenceClassification(config)


def loader(features: list[dict], batch_size: int = 8) -> DataLoader:
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from leptonkit.registry.store import builtin_source

    tokenizer = AutoTokenizer.from_pretrained(builtin_source("builtin:minilm")[0])
    sampler = LengthGroupedBatchSampler([len(f["input_ids"]) for f in features], batch_size, seed=1)
    return DataLoader(features, batch_sampler=sampler, collate_fn=DataCollatorWithPadding(tokenizer))


def settings(**overrides) -> TrainSettings:
    base = {"epochs": 2, "lr": 1e-3, "precision": "fp32", "checkpoint_every": 3, "log_every": 1}
    return TrainSettings(**(base | overrides))


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_interrupt_then_resume_matches_an_uninterrupted_run(features: list[dict], tmp_path: Path) -> None:
    straight = tiny_model()
    result = train_loop(straight, loader(features), settings(), tmp_path / "straight")
    assert result.status == "completed" and result.progress.step == 12 and result.progress.epoch == 2

    calls = {"n": 0}

    def ctrl_c_at_step_8(model, batch):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return default_loss(model, batch)

    run = tmp_path / "interrupted"
    with pytest.raises(TrainingInterrupted, match="interrupted at step 7") as err:
        train_loop(tiny_model(), loader(features), settings(), run, compute_loss=ctrl_c_at_step_8)
    assert "--resume" in str(err.value) and (run / "checkpoints" / "step-7").is_dir()

    resumed = tiny_model(seed=123)  # different init: everything trainable must come from the checkpoint
    result = train_loop(resumed, loader(features), settings(), run, resume=run)
    assert result.progress.step == 12 and result.progress.samples == 96
    expected, got = weights(straight), weights(resumed)
    for key in expected:
        assert torch.equal(expected[key], got[key]), (key, (expected[key] - got[key]).abs().max())


def test_nan_loss_stops_before_the_update_and_keeps_the_last_good_state(features, tmp_path: Path) -> None:
    calls = {"n": 0}

    def nan_at_step_5(model, batch):
        calls["n"] += 1
        loss = default_loss(model, batch)
        return loss * float("nan") if calls["n"] == 5 else loss

    model = tiny_model()
    with pytest.raises(NonFiniteLossError, match="step 4: the loss is not finite") as err:
        train_loop(model, loader(features), settings(), tmp_path / "run", compute_loss=nan_at_step_5)
    assert "step-4" in str(err.value) and "resume" in str(err.value)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    fresh = tiny_model(seed=5)
    load_trainable(fresh, tmp_path / "run" / "checkpoints" / "step-4")
    assert torch.equal(fresh.classifier.weight, model.classifier.weight)


def test_early_stopping_keeps_the_best_checkpoint_and_logs(features, tmp_path: Path) -> None:
    scores = iter([0.5, 0.9, 0.7, 0.6, 0.4, 0.3])
    snapshots = []

    def evaluate(model):
        snapshots.append(model.classifier.weight.detach().clone())
        return {"macro_f1": next(scores), "accuracy": 0.5}

    model = tiny_model()
    result = train_loop(
        model,
        loader(features),
        settings(epochs=10, eval_every=2, early_stopping={"patience": 2}),
        tmp_path,
        evaluate=evaluate,
        primary_metric="macro_f1",
    )
    assert result.status == "early_stopped"
    assert [h["macro_f1"] for h in result.history] == [0.5, 0.9, 0.7, 0.6]
    assert result.progress.best_step == 4 and result.progress.step == 8
    assert torch.equal(model.classifier.weight, snapshots[1])  # the model ends holding the best weights
    assert (tmp_path / BEST / "trainable.safetensors").is_file()
    records = [json.loads(line) for line in (tmp_path / METRIC_LOG).read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == list(range(1, 9))
    assert all(r["loss"] > 0 and r["lr"] > 0 for r in records if r["split"] == "train")
    assert all(r["rss_bytes"] > 10_000_000 and "cpu_percent" in r for r in records if r["split"] == "train")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_max_steps_bounds_the_run_and_loss_falls(features, tmp_path: Path) -> None:
    model = tiny_model()
    result = train_loop(model, loader(features, 16), settings(max_steps=30, lr=3e-3), tmp_path)
    assert result.progress.step == 30 and result.samples_per_second > 0
    losses = [json.loads(line)["loss"] for line in (tmp_path / METRIC_LOG).read_text().splitlines()]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


@pytest.mark.parametrize("max_norm", [0.05, 1e6])  # clipping the gradients, and leaving them as they are
def test_clipping_folded_into_the_fused_step_matches_clip_grad_norm(max_norm: float) -> None:
    from leptonkit.train.loop import _step_clipped

    torch.manual_seed(0)
    models = [torch.nn.Linear(16, 4), torch.nn.Linear(16, 4)]
    models[1].load_state_dict(models[0].state_dict())
    optimizers = [torch.optim.AdamW(m.parameters(), lr=0.01, fused=True) for m in models]
    for _ in range(3):
        x = torch.randn(8, 16)
        for model in models:
            model(x).pow(2).sum().backward()
        clipped = torch.nn.utils.clip_grad_norm_(models[0].parameters(), max_norm)
        optimizers[0].step()
        folded = torch.nn.utils.get_total_norm([p.grad for p in models[1].parameters()])
        _step_clipped(optimizers[1], folded, max_norm)
        torch.testing.assert_close(folded, clipped)
        for reference, model in zip(models[0].parameters(), models[1].parameters(), strict=True):
            torch.testing.assert_close(model.grad, reference.grad)  # the step leaves the scaled gradients
            torch.testing.assert_close(model, reference)
        assert not hasattr(optimizers[1], "grad_scale")
        for optimizer in optimizers:
            optimizer.zero_grad()
