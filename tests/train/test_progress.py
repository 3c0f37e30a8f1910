"""Progress without a terminal: plain lines every N steps with step, loss, learning rate, samples/s and ETA."""

from __future__ import annotations

import io
import re

import torch
from torch.utils.data import DataLoader

from leptonkit.train.loop import train_loop
from leptonkit.train.progress import ProgressDisplay
from leptonkit.train.recipe import TrainSettings

LINE = re.compile(r"^train step (\d+)/(\d+) loss (\d+\.\d{4}) lr (\S+) samples/s (\d+\.\d) eta (\d+:\d\d:\d\d)$")


def test_plain_lines_every_n_steps_and_at_the_last() -> None:
    stream = io.StringIO()  # not a terminal, as under CI or nohup
    with ProgressDisplay(7, every=3, stream=stream) as display:
        for step in range(1, 8):
            display.update(step, loss=1.0 / step, lr=1e-3, samples_per_second=12.5)
    lines = stream.getvalue().splitlines()
    assert [int(LINE.match(line)[1]) for line in lines] == [3, 6, 7]
    assert lines[0].startswith("train step 3/7 loss 0.3333 lr 1.00e-03 samples/s 12.5 eta ")
    assert lines[-1].endswith("eta 0:00:00")


def test_ranks_other_than_0_print_nothing() -> None:
    stream = io.StringIO()
    with ProgressDisplay(2, every=1, enabled=False, stream=stream) as display:
        display.update(1, loss=1.0, lr=1e-3, samples_per_second=1.0)
    assert stream.getvalue() == ""


def test_the_training_loop_prints_its_progress_when_stderr_is_not_a_terminal(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    rows = [{"x": row, "y": row.sum(dim=0, keepdim=True)} for row in x]
    model = torch.nn.Linear(4, 1)
    settings = TrainSettings(
        max_steps=6,
        batch_size=8,
        lr=0.05,
        scheduler="constant",
        warmup_ratio=0,
        log_every=2,
        precision="fp32",
        checkpoint_every=None,
        early_stopping=None,
    )
    result = train_loop(
        model,
        DataLoader(rows, batch_size=8),
        settings,
        tmp_path,
        compute_loss=lambda m, batch: torch.nn.functional.mse_loss(m(batch["x"]), batch["y"]),
    )
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train step")]
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [(int(m[1]), int(m[2])) for m in matches] == [(2, 6), (4, 6), (6, 6)]
    losses = [float(m[3]) for m in matches]
    assert losses[-1] < losses[0]  # the line shows the loss of the step it reports
    assert all(m[4] == "5.00e-02" and float(m[5]) > 0 for m in matches)
    assert result.progress.step == 6
