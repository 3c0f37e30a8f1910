"""The web console in Chromium, mounted on a real server (``serve --console``) over a registry that real short
fine-tuning runs populated: what each kind of key sees, an alias move and its audit line, a run's loss curve, a
streamed chat reply, classify highlights, live operations numbers. Screenshots go to ``test-artifacts/console``."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from tests.console.conftest import ARTIFACTS
from tests.serve.conftest import bearer


@pytest.fixture(scope="module")
def pages(browser, console_server, console_home):
    """``pages("admin")`` / ``pages("inference")``: a logged-in browser page (one context per key)."""
    contexts = {}

    def page_for(who: str):
        if who not in contexts:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(f"{console_server.url}/console/login")
            page.fill("input[name=key]", console_home.admin_key if who == "admin" else console_home.inference_key)
            page.click("form.login button")
            page.wait_for_url(re.compile(r".*/console/registry$"))
            contexts[who] = (context, page)
        return contexts[who][1]

    yield page_for
    for context, _ in contexts.values():
        context.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_an_inference_key_sees_no_admin_actions(pages, console_server) -> None:
    page = pages("inference")
    assert page.locator("#who").get_attribute("data-scope") == "inference"
    assert page.locator("#versions tr[data-ref='sentiment:2']").count() == 1
    assert page.locator("nav a.admin").count() == 0
    page.goto(f"{console_server.url}/console/registry/sentiment")
    assert page.locator("#v2").count() == 1
    assert page.locator("#move-alias").count() == 0 and page.locator("button.admin").count() == 0
    screenshot(page, "model-as-inference-key")
    refused = page.goto(f"{console_server.url}/console/keys")
    assert refused.status == 403 and "admin key" in page.locator("#error-message").inner_text()


def test_an_admin_moves_an_alias_and_the_audit_log_records_it(pages, console_server, console_home) -> None:
    from leptonkit.registry import Registry

    page = pages("admin")
    screenshot(page, "registry")
    page.goto(f"{console_server.url}/console/registry/sentiment")
    screenshot(page, "model")
    graph = page.locator("svg.lineage")
    kinds = [node.get_attribute("data-kind") for node in graph.locator("g.node").all()]
    assert sorted(kinds) == ["dataset", "model", "model", "run", "run"]  # one prepared dataset, two runs, two versions
    edges = {(e.get_attribute("data-from"), e.get_attribute("data-to")) for e in graph.locator("path.edge").all()}
    runs = [f"r:{run}" for run in console_home.runs]
    assert {(runs[0], "v:sentiment:1"), (runs[1], "v:sentiment:2")} <= edges
    assert {target for source, target in edges if source.startswith("d:")} == set(runs)
    page.fill("#move-alias input[name=alias]", "prod")
    page.select_option("#move-alias select[name=version]", "2")
    page.click("#move-alias button")
    assert "points at version 1" in page.locator("main").inner_text()  # the confirmation page
    page.click("#confirm-alias button")
    page.wait_for_url(re.compile(r".*/console/registry/sentiment$"))
    assert "sentiment@prod now points at version 2 (was 1)" in page.locator(".flash").inner_text()
    assert page.locator("#v2 .alias").inner_text() == "@prod" and page.locator("#v1 .alias").count() == 0
    assert Registry(console_home.home).get("sentiment@prod").version == 2
    page.goto(f"{console_server.url}/console/registry")
    assert page.locator("#versions tr[data-ref='sentiment:2'] .aliases").inner_text().strip() == "@prod"
    page.goto(f"{console_server.url}/console/audit")
    screenshot(page, "audit")
    newest = page.locator("#audit tr.event-admin_action").first.inner_text()
    assert "move_alias" in newest and "alias=prod" in newest and "to_version=2" in newest and "ops" in newest
    page.goto(f"{console_server.url}/console/keys")
    screenshot(page, "keys")


def test_a_runs_loss_chart_has_a_point_per_logged_step(pages, console_server, console_home) -> None:
    page = pages("inference")
    page.goto(f"{console_server.url}/console/runs")
    screenshot(page, "runs")
    run = console_home.runs[0]
    page.click(f"#runs tr[data-run='{run.name}'] a")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss"]) for r in records if r["split"] == "train"]
    assert len(losses) == 8  # log_every=1, max_steps=8
    points = page.locator("#chart-train-loss circle.point")
    assert points.count() == len(losses)
    drawn = [(int(p.get_attribute("data-x")), float(p.get_attribute("data-y"))) for p in points.all()]
    assert drawn == [(step, pytest.approx(loss, rel=1e-5)) for step, loss in losses]
    assert page.locator("#chart-valid-accuracy circle.point").count() == 2  # eval_every=4 of 8 steps
    assert page.locator("#run-version").inner_text() == "sentiment:1"
    screenshot(page, "run")
    page.goto(f"{console_server.url}/console/runs")
    page.check(f"input[value='{console_home.runs[0].name}']")
    page.check(f"input[value='{console_home.runs[1].name}']")
    page.click("#compare-form button")
    series = page.locator("#chart-train-loss g.series")
    assert series.count() == 2 and [s.get_attribute("data-points") for s in series.all()] == ["8", "8"]
    screenshot(page, "compare")
    page.goto(f"{console_server.url}/console/data")
    assert int(page.locator(".dataset .rows-out").first.inner_text()) > 0
    screenshot(page, "data")


def test_the_chat_playground_streams_a_reply_in_pieces(pages, console_server) -> None:
    page = pages("inference")
    page.goto(f"{console_server.url}/console/playground")
    page.wait_for_selector("#chat select[name=model] option[value='tiny']", state="attached")
    page.fill("#chat input[name=temperature]", "0")
    # the server folds the tokens a slow reader missed into one delta: 12 tokens (20 ms) could arrive as one
    page.fill("#chat input[name=max_tokens]", "64")
    page.select_option("#chat select[name=model_b]", "tiny")  # side by side: the same greedy reply twice
    page.click("#chat button")
    page.wait_for_selector("#reply-a[data-done='1']", timeout=60_000)
    page.wait_for_selector("#reply-b[data-done='1']", timeout=60_000)
    reply = page.locator("#reply-a")
    assert int(reply.get_attribute("data-events")) > 1 and reply.inner_text().strip()
    assert page.locator("#reply-b").inner_text() == reply.inner_text()
    screenshot(page, "playground-chat")


def test_classify_highlights_follow_the_attribution_scores(pages, console_server, console_home) -> None:
    page = pages("inference")
    page.goto(f"{console_server.url}/console/playground")
    page.wait_for_selector("#task select[name=model] option[value='sentiment']", state="attached")
    text = "a gorgeous , witty , seductive movie ."
    page.fill("#task textarea[name=text]", text)
    page.click("#task button")
    page.wait_for_selector("#explained-a span.hl", timeout=60_000)
    spans = page.locator("#explained-a span.hl").all()
    shown = [
        (s.inner_text(), float(s.get_attribute("data-score")), s.evaluate("e => getComputedStyle(e).backgroundColor"))
        for s in spans
    ]
    alphas = [_alpha(colour) for _, _, colour in shown]
    by_strength = sorted(range(len(shown)), key=lambda i: -abs(shown[i][1]))
    assert [alphas[i] for i in by_strength] == sorted(alphas, reverse=True)  # stronger attribution, stronger colour
    assert alphas[by_strength[0]] == 1.0 and len(set(alphas)) > 1
    direct = httpx.post(
        f"{console_server.url}/v1/classify",
        json={"model": "sentiment", "input": text, "explain": True},
        headers=bearer(console_home.inference_key),
        timeout=60,
    ).json()["data"][0]
    assert [(w, pytest.approx(score, abs=1e-6)) for w, score, _ in shown] == [
        (a["word"], a["score"]) for a in sorted(direct["attributions"], key=lambda a: a["start"])
    ]
    assert direct["label"] in page.locator("#explained-a .prediction").inner_text()
    screenshot(page, "playground-classify")


def test_two_versions_of_one_model_side_by_side(pages, console_server, console_home) -> None:
    """sentiment:1 (served as ``sentiment``) and sentiment:2 answer the same text, each pane with its own version's
    prediction, as the API gives it for that version."""
    page = pages("inference")
    page.goto(f"{console_server.url}/console/playground")
    page.wait_for_selector("#task select[name=model_b] option[value='sentiment:2']", state="attached")
    text = "a gorgeous , witty , seductive movie ."
    page.fill("#task textarea[name=text]", text)
    page.select_option("#task select[name=model]", "sentiment")
    page.select_option("#task select[name=model_b]", "sentiment:2")
    page.click("#task button")
    for pane in ("a", "b"):
        page.wait_for_selector(f"#explained-{pane} .prediction", timeout=60_000)
    shown = {}
    for pane, model in (("a", "sentiment:1"), ("b", "sentiment:2")):
        direct = httpx.post(
            f"{console_server.url}/v1/classify",
            json={"model": model, "input": text},
            headers=bearer(console_home.inference_key),
            timeout=60,
        ).json()["data"][0]
        shown[pane] = page.locator(f"#explained-{pane} .prediction").inner_text()
        assert shown[pane] == f"{direct['label']} (score {direct['score']:.3f})"
    assert shown["a"] != shown["b"]  # two fine-tunings (different learning rates), two answers
    screenshot(page, "playground-two-versions")


def test_ner_shows_each_entity_with_its_word_attributions(pages, console_server, console_home) -> None:
    page = pages("inference")
    page.goto(f"{console_server.url}/console/playground")
    page.wait_for_selector("#task select[name=model] option[value='tagger']", state="attached")
    text = "Peter Blackburn met officials in Brussels"
    page.select_option("#task select[name=task]", "ner")
    page.select_option("#task select[name=model]", "tagger")
    page.fill("#task textarea[name=text]", text)
    page.click("#task button")
    page.wait_for_selector("#explained-a h3", timeout=60_000)
    entities = httpx.post(
        f"{console_server.url}/v1/ner",
        json={"model": "tagger", "input": text, "explain": True},
        headers=bearer(console_home.inference_key),
        timeout=60,
    ).json()["data"][0]["entities"]
    shown = page.locator("#explained-a .prediction").all_inner_texts()
    assert [line.split(" (score")[0] for line in shown] == [f"{e['type']} “{e['text']}”" for e in entities]
    blocks = page.locator("#explained-a p.explained").all()
    assert [len(b.locator("span.hl").all()) for b in blocks] == [len(e["attributions"]) for e in entities]
    if not entities:
        assert "no entities found" in page.locator("#explained-a").inner_text()
    screenshot(page, "playground-ner")


def _alpha(colour: str) -> float:
    """The opacity of a computed CSS colour: ``rgba(r, g, b, a)``, or ``rgb(r, g, b)`` when fully opaque."""
    parts = re.match(r"rgba?\(([^)]*)\)", colour).group(1).split(",")
    return float(parts[3]) if len(parts) == 4 else 1.0


def test_a_model_the_server_cannot_run_is_an_error_on_the_page(pages, console_server) -> None:
    page = pages("inference")
    page.goto(f"{console_server.url}/console/playground")
    page.wait_for_selector("#task select[name=model] option[value='sentiment']", state="attached")
    page.evaluate("document.querySelector('#task select[name=model]').append(new Option('missing', 'missing'))")
    page.select_option("#task select[name=model]", "missing")
    page.click("#task button")
    page.wait_for_selector("#task-error:not([hidden])")
    assert "404" in page.locator("#task-error").inner_text() and "missing" in page.locator("#task-error").inner_text()
    page.select_option("#task select[name=model]", "sentiment")  # the page keeps working
    page.click("#task button")
    page.wait_for_selector("#explained-a span.hl", timeout=60_000)


def test_the_operations_request_counter_rises_after_requests(pages, console_server, console_home) -> None:
    page = pages("inference")
    page.goto(f"{console_server.url}/console/operations")
    page.wait_for_selector("#ops[data-polls]", state="attached")  # the first poll came back
    before = float(page.locator("[data-field=requests_total]").inner_text())
    for text in ("one", "two", "three"):
        response = httpx.post(
            f"{console_server.url}/v1/classify",
            json={"model": "sentiment", "input": text},
            headers=bearer(console_home.inference_key),
            timeout=30,
        )
        assert response.status_code == 200
    deadline = time.monotonic() + 15
    while float(page.locator("[data-field=requests_total]").inner_text()) < before + 3:
        assert time.monotonic() < deadline, "the counter did not rise"
        page.wait_for_timeout(250)
    states = dict(
        zip(
            page.locator("#alerts td:first-child").all_inner_texts(),
            page.locator("#alerts td.state").all_inner_texts(),
            strict=True,
        )
    )
    assert states["LeptonkitDown"] == "ok" and states["LeptonkitHighErrorRate"] in ("ok", "no data")
    memory = dict(
        zip(
            page.locator("#ops-models td:first-child").all_inner_texts(),
            page.locator("#ops-models td:nth-child(4)").all_inner_texts(),
            strict=True,
        )
    )
    assert re.fullmatch(r"\d+ (KB|MB)", memory["sentiment"]) and re.fullmatch(r"\d+ (KB|MB)", memory["tiny"])
    screenshot(page, "operations")
