"""Training on more than one machine, on loopback: ``pretrain --nnodes 2 --node-rank R --master-addr --master-port``
launched twice (two "machines" of one process each) forms one torchrun process group of 2 ranks (gloo), and with
``--fsdp`` the ranks shard the model (FSDP2). Each rank trains on its half of every global batch, so the result
is the one-process run on whole batches: the held-out loss after 4 steps agrees within :data:`TOLERANCE`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import LEPTONKIT
from tests.security.server import free_port

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "tinystories_sample.txt"
TINY = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 32}  # fmt: skip
# float32 sums in another order (two shards, a reduce-scatter) are all that differs from one process
TOLERANCE = 1e-4


def _pretrain(corpus: Path, home: Path, run_dir: Path, *args: str) -> list[str]:
    settings = [f"pretrain.model.{key}={value}" for key, value in TINY.items()]
    settings += ["pretrain.samples=0", "train.precision=fp32", "train.warmup_ratio=0"]
    return [*LEPTONKIT, "pretrain", "--data", str(corpus), "--name", "stories", "--vocab-size", "300",
            "--block-size", "32", "--max-steps", "4", "--run-dir", str(run_dir), "--json",
            *(arg for setting in settings for arg in ("--set", setting)), *args]  # fmt: skip


def test_two_machines_with_fsdp_train_what_one_process_trains(tmp_path: Path) -> None:
    corpus = tmp_path / "stories.txt"
    corpus.write_text(SAMPLE.read_text()[:20_000])
    env = os.environ | {"LEPTONKIT_HOME": str(tmp_path / "home")}
    node = ["--batch-size", "4", "--fsdp", "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port"]
    node.append(str(free_port()))
    command = _pretrain(corpus, tmp_path / "home", tmp_path / "two", *node)
    second = subprocess.Popen([*command, "--node-rank", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = subprocess.run([*command, "--node-rank", "0"], env=env, capture_output=True, text=True, timeout=300)
    out, err = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + err.decode()[-2000:]
    assert out == b""  # rank 1 registers and prints nothing
    two = json.loads(first.stdout)
    assert two["ref"] == "stories:1" and two["metrics"]["training"]["processes"] == 2

    single = _pretrain(corpus, tmp_path / "home", tmp_path / "one", "--batch-size", "8")
    one = json.loads(subprocess.run(single, env=env, capture_output=True, text=True, timeout=300, check=True).stdout)
    assert one["ref"] == "stories:2" and one["metrics"]["training"]["processes"] == 1
    losses = two["metrics"]["valid"]["loss"], one["metrics"]["valid"]["loss"]
    assert losses[0] == pytest.approx(losses[1], rel=TOLERANCE)
    trained_steps = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in trained_steps if r["split"] == "train"] == [4]  # one writer


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--nnodes", "2"], "--nnodes 2 needs --master-addr"), (["--nnodes", "2", "--node-rank", "2"], "--node-rank 2")],
)
def test_bad_launch_flags_are_one_line(cli, tmp_path: Path, flags: list[str], message: str) -> None:
    done = cli("pretrain", "--data", str(SAMPLE), "--name", "x", *flags)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr
