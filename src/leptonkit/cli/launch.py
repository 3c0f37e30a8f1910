"""Training on several processes or machines: the launch flags of ``train``, ``finetune`` and ``pretrain``, and the
relaunch of the same command under ``torchrun`` (``torch.distributed.run``).

On one machine ``--nproc N`` starts N processes. On several, the same command runs on every machine with its own
``--node-rank`` and the same ``--nnodes``, ``--master-addr`` (the address of the rank-0 machine, reachable from the
others) and ``--master-port``; torchrun's static rendezvous joins them into one process group of ``N x nodes`` ranks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import typer

from leptonkit.errors import InvalidInputError

DEFAULT_MASTER_PORT = 29517

NPROC_OPTION = typer.Option(1, "--nproc", min=1, help="Processes on this machine: >1 relaunches under torchrun.")
NNODES_OPTION = typer.Option(1, "--nnodes", min=1, help="Machines taking part (the same command on each).")
NODE_RANK_OPTION = typer.Option(0, "--node-rank", min=0, help="This machine's rank, 0 to --nnodes - 1.")
MASTER_ADDR_OPTION = typer.Option(
    None, "--master-addr", help="Address of the --node-rank 0 machine (needed with --nnodes > 1)."
)
MASTER_PORT_OPTION = typer.Option(
    None,
    "--master-port",
    help=f"Rendezvous port on the master (default $LEPTONKIT_MASTER_PORT or {DEFAULT_MASTER_PORT})",
)
FSDP_OPTION = typer.Option(
    False, "--fsdp", help="With several processes: shard weights, gradients and optimiser state (FSDP) instead of DDP."
)
LAUNCH_FLAGS = ("--nproc", "--nnodes", "--node-rank", "--master-addr", "--master-port")  # torchrun's, not the ranks'


@dataclass(frozen=True)
class Launch:
    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    def __post_init__(self) -> None:
        if self.node_rank >= self.nnodes:
            raise InvalidInputError(
                f"--node-rank {self.node_rank} with --nnodes {self.nnodes}", hint="ranks go from 0 to --nnodes - 1"
            )
        if self.nnodes > 1 and not self.master_addr:
            raise InvalidInputError(
                f"--nnodes {self.nnodes} needs --master-addr", hint="the address of the --node-rank 0 machine"
            )

    @property
    def distributed(self) -> bool:
        return self.nproc > 1 or self.nnodes > 1

    def torchrun(self) -> list[str]:
        """The ``torch.distributed.run`` command line before the script."""
        port = self.master_port or int(os.environ.get("LEPTONKIT_MASTER_PORT", DEFAULT_MASTER_PORT))
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(self.nproc)]
        command += ["--nnodes", str(self.nnodes), "--node_rank", str(self.node_rank), "--master_port", str(port)]
        return command + (["--master_addr", self.master_addr] if self.master_addr else [])


def relaunch_if_distributed(launch: Launch) -> None:
    """With several processes or machines: run this same command again under torchrun without the launch flags,
    then exit with its status. Otherwise return, and the command trains in this process."""
    if not launch.distributed:
        return
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg in LAUNCH_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in LAUNCH_FLAGS)):
            argv.append(arg)
    command = [*launch.torchrun(), "-m", "leptonkit.cli.main", *argv]
    sys.exit(subprocess.call(command, env=os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}))
