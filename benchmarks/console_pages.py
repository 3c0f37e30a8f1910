"""How long each web console page takes to load with 200 versions and 50 runs in the registry (target: < 1 s).

The registry is filled cheaply but for real: 200 versions of a tiny BERT classifier registered through the registry
API (one model with 100 versions and a lineage graph to draw, 20 with 5 each), 50 of them with a run folder of
500 training and 10 validation log lines, pinned to one of two datasets prepared by ``leptonkit.data.prepare``,
and 200 audit lines. The console runs under uvicorn on its own (``leptonkit console``, no model server: the
playground and operations pages then render their "no server" state; their live numbers come from the server).

Estimator, declared before the run: per page, the median wall time of 5 sequential GETs after one warm-up GET,
timed by an httpx client on the same machine over loopback; the target is met when the slowest page's median is
under 1 second.

    .venv/bin/python benchmarks/console_pages.py
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from results_io import REPO, machine, write_result

VERSIONS, RUNS, BIG = 200, 50, 100  # BIG versions of one model, the rest 5 per name
TRAIN_LINES, VALID_LINES, REPEATS = 500, 10, 5


def populate(home: Path) -> dict[str, str]:
    from transformers import BertConfig, BertForSequenceClassification

    from leptonkit.data import prepare
    from leptonkit.registry import Registry
    from leptonkit.security.audit import AuditLog
    from leptonkit.security.keys import KeyStore

    folder = home.parent / "tiny"
    config = BertConfig(vocab_size=64, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)
    BertForSequenceClassification(config).save_pretrained(folder)
    datasets = []
    for index in range(2):
        out = home.parent / f"data-{index}"
        prepare(
            [str(REPO / "examples" / "data" / "support_tickets.jsonl")], task="classification", out=str(out), seed=index
        )
        datasets.append(out)
    registry = Registry(home)
    names = ["big"] * BIG + [f"model-{i:02d}" for i in range((VERSIONS - BIG) // 5) for _ in range(5)]
    for index, name in enumerate(names):
        lineage = {}
        if index < RUNS:
            run = home / "runs" / f"run-{index:02d}"
            (run / "tensorboard").mkdir(parents=True)
            (run / "tensorboard" / f"events.out.tfevents.{int(time.time()) - 3600 + index}.host").touch()
            lines = [
                {
                    "step": s,
                    "split": "train",
                    "loss": 2 / s,
                    "lr": 1e-3,
                    "grad_norm": 1.0,
                    "epoch": s / 100,
                    "cpu_memory_mb": 500.0,
                }
                for s in range(1, TRAIN_LINES + 1)
            ]
            lines += [
                {"step": s * 50, "split": "valid", "accuracy": 0.5 + s / 40, "macro_f1": 0.4 + s / 40}
                for s in range(1, VALID_LINES + 1)
            ]
            (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
            (run / "result.json").write_text(json.dumps({"training": {"status": "completed", "steps": TRAIN_LINES}}))
            data = datasets[index % 2]
            manifest = json.loads((data / "manifest.json").read_text())
            lineage = {"run_dir": str(run), "data": {"path": str(data), "content_hash": manifest["content_hash"]}}
        if index > 0 and name == "big":
            lineage["continued_from"] = f"big:{index}"
        registry.register(
            str(folder),
            name=name,
            task="classification",
            lineage=lineage,
            metrics={"test": {"accuracy": 0.8, "macro_f1": 0.79}},
            tags={"team": "bench"},
        )
    for name in sorted(set(names)):
        registry.alias(f"{name}:1", "prod")
    audit = AuditLog(home / "audit.log")
    for index in range(200):
        audit.write("admin_action", key="bench", action="verify", ref=f"big:{index % BIG + 1}", damaged=0)
    return {"admin": KeyStore(home).create("bench", "admin")[1]}


def main() -> None:
    import uvicorn

    from leptonkit.console.app import standalone
    from leptonkit.console.web import ConsoleSettings

    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        started = time.perf_counter()
        keys = populate(home)
        populate_s = time.perf_counter() - started
        server = uvicorn.Server(uvicorn.Config(standalone(ConsoleSettings(home=home)), port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/console"
        pages = [
            "/registry",
            "/registry/big",
            "/registry/model-00",
            "/runs",
            "/runs/run-00",
            "/runs/compare?run=run-00&run=run-01&run=run-02",
            "/data",
            "/playground",
            "/operations",
            "/keys",
            "/audit",
        ]
        timings: dict[str, dict[str, float]] = {}
        with httpx.Client(base_url=url, timeout=60) as client:
            client.post("/login", data={"key": keys["admin"]})
            for page in pages:
                assert client.get(page).status_code == 200, page  # warm-up
                seconds = []
                for _ in range(REPEATS):
                    begin = time.perf_counter()
                    response = client.get(page)
                    seconds.append(time.perf_counter() - begin)
                    assert response.status_code == 200, page
                timings[page] = {
                    "median_s": round(statistics.median(seconds), 4),
                    "max_s": round(max(seconds), 4),
                    "bytes": len(response.content),
                }
                print(
                    f"{page:55s} median {timings[page]['median_s'] * 1000:7.1f} ms  max {max(seconds) * 1000:7.1f} ms"
                )
        server.should_exit = True
        thread.join(timeout=30)
    slowest = max(timings, key=lambda page: timings[page]["median_s"])
    write_result(
        "console_pages",
        {
            "estimator": f"median of {REPEATS} sequential GETs after a warm-up, httpx over loopback",
            "registry": {
                "versions": VERSIONS,
                "runs": RUNS,
                "train_lines_per_run": TRAIN_LINES,
                "valid_lines_per_run": VALID_LINES,
            },
            "populate_seconds": round(populate_s, 1),
            "pages": timings,
            "slowest_page": slowest,
            "slowest_median_s": timings[slowest]["median_s"],
            "target_s": 1.0,
        },
        info,
    )


if __name__ == "__main__":
    main()
