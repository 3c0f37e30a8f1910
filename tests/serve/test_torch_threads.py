"""torch's CPU threads in the server: the engines' own threads get the configured count, the event loop one thread
(``serve.engine.torch_threads`` says why)."""

from __future__ import annotations

import asyncio
import threading

import torch

from leptonkit.serve.config import ServeConfig
from leptonkit.serve.models import ModelSet


def test_engine_threads_get_the_configured_torch_threads_and_the_event_loop_one(served_home):
    seen: dict[str, int] = {}

    async def serve() -> None:
        models = await ModelSet.load(ServeConfig(models=["tiny", "sentiment"], home=str(served_home), threads=2))
        try:
            seen["event loop"] = torch.get_num_threads()
            encoder = models.encoders["sentiment"]
            seen["encoder"] = await asyncio.get_running_loop().run_in_executor(encoder._executor, torch.get_num_threads)
            seen["generator engine"] = models.generators["tiny"].threads
        finally:
            await models.close()

    # the server's event loop runs in a thread of its own here, as in the other serving tests
    loop_thread = threading.Thread(target=asyncio.run, args=(serve(),))
    loop_thread.start()
    loop_thread.join()
    assert seen == {"event loop": 1, "encoder": 2, "generator engine": 2}
