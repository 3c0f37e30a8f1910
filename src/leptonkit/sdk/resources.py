"""Resource shapes: the ``resources=`` of the SDK objects, one name for what a job or a replica may use.

A shape is CPUs, GPUs and memory. It becomes torch threads locally (training in this process, ``--threads`` of a
local server), ``num_cpus``/``num_gpus`` of each Ray Serve replica, and requests/limits on Kubernetes. The catalog:

========  ====  ====  ======
name      cpus  gpus  memory
========  ====  ====  ======
cpu.1x    1     0     2Gi
cpu.2x    2     0     4Gi
cpu.4x    4     0     8Gi
gpu.1x    4     1     16Gi
========  ====  ====  ======

Users add or replace shapes under ``resources:`` in ``LEPTONKIT_HOME/config.yaml`` (:func:`leptonkit.config.
config_file`). A shape asking for a GPU where this machine has none fails in one line before any work starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from leptonkit.config import config_file, user_config
from leptonkit.errors import InvalidInputError


@dataclass(frozen=True)
class ResourceShape:
    """What one job or replica may use.

    >>> shape = resource_shape("cpu.2x")
    >>> shape.threads, shape.ray_options(), shape.kubernetes()["limits"]
    (2, {'num_cpus': 2.0, 'num_gpus': 0}, {'cpu': '2', 'memory': '4Gi'})
    """

    name: str
    cpus: float
    gpus: int = 0
    memory: str = "4Gi"

    @property
    def threads(self) -> int:
        """torch CPU threads of a local job or server with this shape."""
        return max(1, int(self.cpus))

    def ray_options(self) -> dict[str, Any]:
        return {"num_cpus": float(self.cpus), "num_gpus": self.gpus}

    def kubernetes(self) -> dict[str, dict[str, str]]:
        """Requests and limits of the server container (GPUs go in ``nvidia.com/gpu``, set by the renderer)."""
        cpu = f"{self.cpus:g}"
        return {"requests": {"cpu": cpu, "memory": self.memory}, "limits": {"cpu": cpu, "memory": self.memory}}

    def check_local(self) -> None:
        """Fail before any work when this machine cannot give the shape's GPUs."""
        if not self.gpus:
            return
        import torch

        found = torch.cuda.device_count()
        if found < self.gpus:
            raise InvalidInputError(
                f"resources={self.name!r} needs {self.gpus} GPU(s); this machine has {found}",
                hint="use a cpu.* shape here, or deploy to a cluster that has GPUs",
                param="resources",
            )


CATALOG = {
    "cpu.1x": ResourceShape("cpu.1x", 1, 0, "2Gi"),
    "cpu.2x": ResourceShape("cpu.2x", 2, 0, "4Gi"),
    "cpu.4x": ResourceShape("cpu.4x", 4, 0, "8Gi"),
    "gpu.1x": ResourceShape("gpu.1x", 4, 1, "16Gi"),
}


def shapes() -> dict[str, ResourceShape]:
    """The catalog with the user's own shapes (``resources:`` in the config file) added or replacing."""
    found = dict(CATALOG)
    for name, fields in (user_config().get("resources") or {}).items():
        if not isinstance(fields, dict) or not isinstance(fields.get("cpus"), int | float) or fields["cpus"] <= 0:
            raise InvalidInputError(
                f"{config_file()}: resource shape {name!r} needs cpus > 0", hint="e.g. cpu.8x: {cpus: 8, memory: 16Gi}"
            )
        unknown = set(fields) - {"cpus", "gpus", "memory"}
        if unknown:
            raise InvalidInputError(f"{config_file()}: resource shape {name!r} has unknown keys {sorted(unknown)}",
                                    hint="allowed: cpus, gpus, memory")  # fmt: skip
        found[str(name)] = ResourceShape(
            str(name), fields["cpus"], int(fields.get("gpus", 0)), str(fields.get("memory", "4Gi"))
        )
    return found


def resource_shape(name: str | ResourceShape | None) -> ResourceShape | None:
    """The shape ``name`` names (``None`` for none); an unknown name is one line listing the known ones."""
    if name is None or isinstance(name, ResourceShape):
        return name
    known = shapes()
    if name not in known:
        raise InvalidInputError(
            f"unknown resource shape {name!r}",
            hint=f"known: {', '.join(known)}; add your own under resources: in {config_file()}",
            param="resources",
        )
    return known[name]


@contextlib.contextmanager
def local_threads(shape: ResourceShape | None) -> Iterator[None]:
    """Run the block with torch on the shape's threads (a training job in this process), restoring them after."""
    if shape is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(shape.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
