"""What a training run shows while it runs, on stderr and on rank 0 only.

On a terminal: a rich progress bar (steps, time left, the last loss), cleared when the loop ends. Without one (CI,
a Kubernetes job, ``nohup``, a pipe): one plain line every ``every`` optimiser steps and at the last step, e.g.::

    train step 40/200 loss 0.4321 lr 1.20e-04 samples/s 85.3 eta 0:01:52

so that logs show that a long job is alive and how far it is, without a bar's control characters.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import IO, Any


class ProgressDisplay:
    """A context manager; call :meth:`update` after every optimiser step."""

    def __init__(
        self, total: int, *, done: int = 0, every: int = 10, enabled: bool = True, stream: IO[str] | None = None
    ):
        from rich.console import Console

        self.total, self.every, self.enabled = total, every, enabled
        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream)
        self.started, self.done_at_start = time.monotonic(), done
        self.bar: Any = None
        if enabled and self.console.is_terminal:
            self.bar = _rich_bar(self.console)
            self.task = self.bar.add_task("train", total=total, completed=done, info="")

    def __enter__(self) -> ProgressDisplay:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, step: int, *, loss: float, lr: float, samples_per_second: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=f"loss {loss:.4f}")
        elif step % self.every == 0 or step == self.total:
            line = self.line(step, loss=loss, lr=lr, samples_per_second=samples_per_second)
            print(line, file=self.stream, flush=True)

    def line(self, step: int, *, loss: float, lr: float, samples_per_second: float) -> str:
        """The plain progress line; the time left extrapolates the steps per second of this session."""
        elapsed = time.monotonic() - self.started
        done = step - self.done_at_start
        eta = timedelta(seconds=round((self.total - step) * elapsed / done)) if done > 0 else "?"
        return (
            f"train step {step}/{self.total} loss {loss:.4f} lr {lr:.2e} samples/s {samples_per_second:.1f} eta {eta}"
        )


def _rich_bar(console: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
    )
