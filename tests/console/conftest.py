"""Console fixtures: a registry populated by real short runs (two fine-tuned tiny classifiers, each with its run
folder and prepared dataset) plus the tiny generator, a real server with the console mounted, and Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.serve.conftest import ServerThread, serve_thread, tiny_encoders, tiny_generator  # noqa: F401 - fixtures
from tests.train.conftest import sst2_prepared, sst2_raw, tiny_bert_dir  # noqa: F401 - fixtures used here

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "console"  # screenshots (gitignored)
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"


@dataclass
class ConsoleHome:
    home: Path
    admin_key: str
    inference_key: str
    runs: list[Path]  # the two fine-tuning runs' folders, oldest first


@pytest.fixture(scope="module")
def console_home(tmp_path_factory, tiny_bert_dir, sst2_prepared, tiny_generator, tiny_encoders) -> ConsoleHome:  # noqa: F811
    """sentiment:1 and sentiment:2 fine-tuned for a few logged steps (sentiment@prod on 1), tiny:1, the tiny NER
    tagger:1 (random head), two keys."""
    import torch

    from leptonkit import finetune
    from leptonkit.registry import Registry
    from leptonkit.security.keys import KeyStore

    home = tmp_path_factory.mktemp("console-home")
    registry = Registry(home)
    runs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for index, lr in enumerate((1e-3, 3e-3), start=1):
            run_dir = home / "runs" / f"sentiment-{index}"
            finetune(
                base=str(tiny_bert_dir),
                data=sst2_prepared,
                task="classification",
                method="full",
                name="sentiment",
                registry=registry,
                run_dir=str(run_dir),
                max_steps=8,
                batch_size=16,
                lr=lr,
                precision="fp32",
                log_every=1,
                eval_every=4,
            )
            runs.append(run_dir)
    finally:
        torch.set_num_threads(threads)
    registry.alias("sentiment:1", "prod")
    registry.register(str(tiny_generator), name="tiny", task="generation")
    registry.register(str(tiny_encoders["tagger"]), name="tagger", task="ner")
    keys = KeyStore(home)
    return ConsoleHome(home, keys.create("ops", "admin")[1], keys.create("viewer", "inference")[1], runs)


@pytest.fixture(scope="module")
def console_server(console_home: ConsoleHome) -> Iterator[ServerThread]:
    """``leptonkit serve tiny sentiment@prod sentiment:2 tagger --console`` with API keys on: the console at /console
    of the same server; two versions of sentiment side by side (``sentiment`` is version 1, ``sentiment:2`` the
    other)."""
    from leptonkit.console.app import mount_console
    from leptonkit.console.web import ConsoleSettings

    settings = ConsoleSettings(home=console_home.home, same_server=True, alerts=ALERTS)
    with serve_thread(
        models=["tiny", "sentiment@prod", "sentiment:2", "tagger"],
        home=str(console_home.home),
        auth="on",
        dtype="float32",
        explain_steps=8,
        setup=lambda app: mount_console(app, settings),
    ) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()
