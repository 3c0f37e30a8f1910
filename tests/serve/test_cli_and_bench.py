"""``leptonkit serve`` argument errors and ``leptonkit bench serve`` against a real server."""

from __future__ import annotations

from leptonkit.bench.serve import BenchSettings, make_prompts
from tests.security.server import free_port


def test_serve_unknown_model_is_one_line_exit_2(cli):
    result = cli("serve", "no-such-model", "--port", "0")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and "no-such-model" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_bad_option_value_names_the_flag(cli, minilm):
    result = cli("serve", "minilm", "--dtype", "float8")
    assert result.returncode == 2 and "--dtype" in result.stderr


def test_random_prompts_have_the_requested_length():
    prompts = make_prompts(BenchSettings(url="", model="m", num_prompts=5, input_len=7, vocab_high=300))
    assert len(prompts) == 5 and all(len(p) == 7 and all(100 <= t < 300 for t in p) for p in prompts)


def test_a_prompts_file_gives_one_prompt_per_line_whatever_its_strings_hold(tmp_path):
    text = "a\x85b\u2028c"  # splitlines would end lines at both
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(f'{{"prompt": "{text}"}}\r\n{text}\n', encoding="utf-8", newline="")
    settings = BenchSettings(url="", model="m", num_prompts=2, prompts_file=str(prompts))
    assert make_prompts(settings) == [text, text]


def test_bench_serve_measures_a_real_server(server, cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Hello world\nTo be or not to be\n")
    out = tmp_path / "result.json"
    result = cli(
        "bench", "serve", "--url", server.url, "--model", "tiny", "--dataset", str(prompts),
        "--num-prompts", "6", "--output-len", "5", "--max-concurrency", "3", "--output", str(out), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = result.json()
    assert data["completed"] == 6 and data["failed"] == 0
    assert data["total_output_tokens"] == 30
    assert data["output_throughput"] > 0 and 0 < data["ttft_ms"]["median"] <= data["e2el_ms"]["median"]
    assert data["tpot_ms"]["mean"] > 0 and out.read_text().strip().startswith("{")


def test_bench_serve_reports_failed_requests_with_their_error(server, cli):
    result = cli("bench", "serve", "--url", server.url, "--model", "no-such-model", "--num-prompts", "3", "--json")
    assert result.returncode == 0, result.stderr
    data = result.json()
    assert data["completed"] == 0 and data["failed"] == 3
    (error,) = data["errors"]  # the same error for every request, reported once
    assert error.startswith("HTTP 404") and "no-such-model" in error


def test_bench_serve_reports_an_unreachable_server(cli):
    result = cli("bench", "serve", "--url", f"http://127.0.0.1:{free_port()}", "--model", "m", "--num-prompts", "2",
                 "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = result.json()
    assert data["completed"] == 0 and data["failed"] == 2 and "Connect" in data["errors"][0]
