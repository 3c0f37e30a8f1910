"""torch's CPU threads in the server: each engine's own thread runs ops on the configured number of threads, and
every other thread (the event loop, model loading) runs them on one.

Why not one setting for the whole process: PyTorch's OpenMP runtime (libgomp) gives every thread that runs a
parallel op its own team of worker threads, kept for the life of that thread, and once a process holds more
workers than CPUs, libgomp stops idle workers spinning: they sleep, and every parallel op waits for them to wake.
Measured on a 2-CPU machine after the loading thread had run parallel ops: a one-sequence decode step of a 17M
Llama in the engine thread took 7.1 ms instead of 3.9 ms, and a 1.7 MB add 148 us instead of 92 us. Serving two
models still gives two engine threads a team each; one model keeps the process within its CPUs.
"""

from __future__ import annotations

import torch


def serial() -> int:
    """Make the calling thread run torch ops on one thread; returns the number it used before."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return before


def use(threads: int | None) -> None:
    """In an engine's own thread: run its ops on ``threads`` threads (None: leave torch's setting)."""
    if threads:
        torch.set_num_threads(threads)
