"""A prefix-tuned adapter loads and predicts in a fresh process: ``load_model`` prepares it (no training code), and
the command prints no library warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from leptonkit.train.api import finetune

pytestmark = pytest.mark.usefixtures("one_thread")


def test_prefix_adapter_predicts_in_a_process_that_never_trained(
    registry, cli, tiny_bert_dir: Path, sst2_prepared: Path
) -> None:
    quick = {"max_steps": 2, "batch_size": 16, "precision": "fp32"}
    version = finetune(
        base=str(tiny_bert_dir), data=sst2_prepared, task="classification", method="prefix", name="p", **quick
    )
    assert version.kind == "adapter"
    result = cli("predict", version.ref, "a gorgeous , witty , seductive movie .", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # peft's and transformers' deprecation notices are not the user's business
    [row] = result.json()
    assert row["label"] in ("0", "1") and row["score"] > 0.0
