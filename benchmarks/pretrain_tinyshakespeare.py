"""Pretrain the ``tiny`` preset on Tiny Shakespeare (last 10% held out) for a fixed wall-clock budget.

Target (issue 5): held-out loss <= 1.75 nats per character within 10 minutes of training on this machine, with
training throughput in tokens/s and model FLOPs utilisation (6 x parameters x tokens/s over the bf16 matmul peak
measured here, under the machine's current load). Writes ``results/pretrain_tinyshakespeare.json`` and registers
the model as ``shakespeare`` in ``LEPTONKIT_HOME`` (the base of ``sft_alpaca.py``).

    .venv/bin/python benchmarks/pretrain_tinyshakespeare.py --minutes 10
"""

from __future__ import annotations

from pretrain_common import SHARED, pretrain_benchmark, pretrain_parser

if __name__ == "__main__":
    arguments = pretrain_parser(__doc__, name="shakespeare", minutes=10.0).parse_args()
    pretrain_benchmark(
        SHARED / "tinyshakespeare" / "input.txt",
        arguments,
        result_name="pretrain_tinyshakespeare",
        title="pretrain tiny preset on tinyshakespeare (last 10% held out)",
        target_nats_per_char=1.75,
    )
