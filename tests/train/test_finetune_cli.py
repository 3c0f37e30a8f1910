"""`leptonkit finetune | train | eval | predict` through the real CLI: registry hand-off, errors, Ctrl-C, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import LEPTONKIT

pytestmark = pytest.mark.usefixtures("one_thread")


def _finetune(base: Path, data: Path, method: str, name: str, *flags: str) -> list[str]:
    """``finetune`` arguments: a ``method`` fine-tune of ``base`` on the classification set ``data``, named ``name``."""
    paths = ["--base", str(base), "--data", str(data)]
    return ["finetune", *paths, "--task", "classification", "--method", method, "--name", name, *flags]


def _logged(run: Path) -> list[str]:
    """``--set`` flags for a run folder ``run`` with a metrics line every step, in fp32."""
    return ["--set", f"run_dir={run}", "--set", "train.log_every=1", "--set", "train.precision=fp32"]


def test_finetune_eval_predict_round_trip(cli, tiny_bert_dir: Path, sst2_prepared: Path) -> None:
    args = _finetune(tiny_bert_dir, sst2_prepared, "lora", "sentiment", "--max-steps", "4", "--batch-size", "16")
    done = cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    version = done.json()
    assert (version["ref"], version["kind"], version["lineage"]["base"]) == (
        "sentiment:1",
        "adapter",
        str(tiny_bert_dir),
    )
    assert version["lineage"]["recipe"]["train"]["max_steps"] == 4
    assert version["metrics"]["training"]["steps"] == 4

    evaluated = cli("eval", "sentiment:1", "--data", str(sst2_prepared), "--split", "test", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    result = evaluated.json()
    assert (result["task"], result["split"], result["n"]) == ("classification", "test", 60)
    assert set(result["metrics"]) == {"accuracy", "macro_f1"}
    # the same metrics as training measured on the test split, now also stored on the version
    assert result["metrics"]["accuracy"] == pytest.approx(version["metrics"]["test"]["accuracy"])
    shown = cli("models", "show", "sentiment:1", "--json").json()
    assert shown["metrics"]["test"] == result["metrics"]

    predicted = cli("predict", "sentiment", "a gorgeous movie", "a dull mess", "--json")
    assert predicted.returncode == 0, predicted.stderr
    rows = predicted.json()
    assert [r["text"] for r in rows] == ["a gorgeous movie", "a dull mess"]
    assert all(r["label"] in ("0", "1") and set(r["scores"]) == {"0", "1"} for r in rows)


def test_train_recipe_ner_with_overrides(cli, tmp_path: Path, tiny_bert_dir, conll_prepared) -> None:
    recipe = tmp_path / "ner.yaml"
    recipe.write_text(
        f"stage: ner\nname: people\nbase: {tiny_bert_dir}\ndata: {conll_prepared}\nmethod: full\n"
        "train: {epochs: 1, batch_size: 8, precision: fp32}\nadversarial: {method: fgm, epsilon: 0.5}\n"
    )
    done = cli("train", str(recipe), "train.max_steps=3", "train.lr=0.002", "--json")
    assert done.returncode == 0, done.stderr
    version = done.json()
    assert version["task"] == "ner" and version["lineage"]["recipe"]["train"]["lr"] == 0.002
    assert version["lineage"]["recipe"]["adversarial"]["method"] == "fgm"
    assert set(version["metrics"]["test"]) == {"entity_f1", "precision", "recall"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "ner"], "does not match task 'ner'"),
        (["--task", "classification", "--base", "nosuchmodel"], "model 'nosuchmodel' not found"),
        (["--task", "classification", "--set", "train.lrr=1"], "unknown recipe key 'train.lrr' (allowed here: epochs"),
        (["--task", "classification", "--method", "adapterx"], "'full', 'lora', 'ia3', 'prefix' or 'freeze'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, sst2_prepared: Path, args: list[str], message: str) -> None:
    base = ["--base", "builtin:minilm"] if "--base" not in args else []
    done = cli("finetune", "--data", str(sst2_prepared), "--name", "x", *base, *args)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_ctrl_c_checkpoints_then_resume_finishes(home: Path, tmp_path: Path, tiny_bert_dir, sst2_prepared) -> None:
    run = tmp_path / "run"
    finetune = _finetune(tiny_bert_dir, sst2_prepared, "full", "interrupted", "--epochs", "30", "--batch-size", "8")
    command = [*LEPTONKIT, *finetune, *_logged(run)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    log = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.is_file() and log.read_text().count("\n") >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: training interrupted at step") and "--resume" in last
    checkpoint = last.split("checkpoint saved to ")[1].split(" (")[0].rstrip(";")
    step = int(Path(checkpoint).name.split("-")[1])
    assert step >= 3 and (Path(checkpoint) / "trainable.safetensors").is_file()

    resumed = subprocess.run(
        [*LEPTONKIT, *finetune, "--max-steps", str(step + 2), "--resume", checkpoint, "--json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["metrics"]["training"]["steps"] == step + 2


def test_two_process_ddp_trains_once_and_only_rank_0_writes(cli, tmp_path: Path, tiny_bert_dir, sst2_prepared) -> None:
    run = tmp_path / "ddp"
    args = _finetune(tiny_bert_dir, sst2_prepared, "lora", "ddp", "--max-steps", "3", "--batch-size", "8")
    done = cli(*args, "--nproc", "2", *_logged(run), "--json")
    assert done.returncode == 0, done.stderr
    version = done.json()  # printed once, by rank 0
    assert version["ref"] == "ddp:1" and version["metrics"]["training"]["processes"] == 2
    assert [v["ref"] for v in cli("models", "list", "--json").json()] == ["ddp:1"]
    train_steps = [
        r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"
    ]
    assert train_steps == [1, 2, 3]  # one writer: each step logged once
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
