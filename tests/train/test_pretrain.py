"""Pretraining end to end on a slice of the bundled TinyStories sample, with a 2-layer, hidden-64 Llama.

One module-scoped run (6 steps, checkpoints at 3 and 6) is shared: registry round trip with plain transformers,
exact resume from the step-3 checkpoint, generation, lm evaluation, and the CLI's bad-input errors.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from leptonkit.errors import InvalidInputError
from leptonkit.registry import Registry
from leptonkit.train.corpus import split_documents
from leptonkit.train.lm_eval import evaluate_lm
from leptonkit.train.recipe import validate_recipe
from leptonkit.train.recipes import pretrain
from leptonkit.train.sampling import generate

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "tinystories_sample.txt"
TINY = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,
        "max_position_embeddings": 64}  # fmt: skip
VOCAB = 400


def recipe(corpus: Path, run_dir: Path, **pretrain_settings):
    return validate_recipe(
        {
            "stage": "pretrain",
            "name": "stories",
            "data": str(corpus),
            "run_dir": str(run_dir),
            "pretrain": {"vocab_size": VOCAB, "model": TINY, "samples": 1, "sample_tokens": 8} | pretrain_settings,
            # fp32: at this size bf16 autocast costs more than it saves on CPU (the loop's own tests cover bf16)
            "train": {
                "max_steps": 6,
                "batch_size": 8,
                "checkpoint_every": 3,
                "eval_every": 3,
                "keep_checkpoints": 2,
                "precision": "fp32",
            },
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(registry, version, run_dir, corpus) of one short pretraining run."""
    root = tmp_path_factory.mktemp("pretrain")
    corpus = root / "stories.txt"
    corpus.write_text(SAMPLE.read_text()[:30_000])
    registry = Registry(root / "home")
    run_dir = root / "run"
    version = pretrain.run(recipe(corpus, run_dir), registry=registry, log=lambda _: None)
    return registry, version, run_dir, corpus


def test_registered_model_loads_with_plain_transformers_and_its_chat_template(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    registry, version, _, _ = trained
    assert (version.task, version.kind) == ("generation", "model")
    model = AutoModelForCausalLM.from_pretrained(version.path)
    tokenizer = AutoTokenizer.from_pretrained(version.path)
    assert model.config.num_hidden_layers == 2 and model.config.vocab_size == len(tokenizer) == VOCAB
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert version.parameters == sum(p.numel() for p in model.parameters())
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert version.lineage["stage"] == "pretrain" and version.lineage["steps"] == 6
    assert registry.get("stories").ref == version.ref


def test_training_lowers_held_out_loss_and_reports_it_per_character(trained):
    _, version, _, _ = trained
    valid = version.metrics["valid"]
    assert valid["loss"] < math.log(VOCAB) - 0.1  # below a uniform guess over the vocabulary
    assert valid["perplexity"] == pytest.approx(math.exp(valid["loss"]))
    assert valid["bits_per_char"] == pytest.approx(valid["nats_per_char"] / math.log(2))
    training = version.metrics["training"]
    assert training["steps"] == 6
    assert training["best_step"] == 6  # the lower held-out loss of steps 3 and 6 is the best: loss is minimised
    assert training["tokens_per_second"] > 0 and training["block_size"] == 64


def test_resume_from_a_checkpoint_reproduces_the_uninterrupted_run(trained):
    from safetensors.torch import load_file

    registry, version, run_dir, corpus = trained
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-3", "step-6"]
    resumed = pretrain.run(
        recipe(corpus, run_dir), resume=str(run_dir / "checkpoints" / "step-3"), registry=registry, log=lambda _: None
    )
    assert resumed.metrics["training"]["steps"] == 6
    straight, again = load_file(version.path / "model.safetensors"), load_file(resumed.path / "model.safetensors")
    assert straight.keys() == again.keys()
    for key in straight:
        torch.testing.assert_close(again[key], straight[key], rtol=0, atol=0, msg=key)


def test_lm_evaluation_counts_every_token_once_whatever_the_window(trained):
    from leptonkit.registry.loading import load_model

    registry, version, _, _ = trained
    loaded = load_model(version.ref, registry=registry)
    docs = ["Lily saw a big red ball.", "Tom was happy. He ran to the park and played."]
    small = evaluate_lm(loaded.model, loaded.tokenizer, docs, block_size=8)
    large = evaluate_lm(loaded.model, loaded.tokenizer, docs, block_size=64)
    n_tokens = sum(len(loaded.tokenizer(d)["input_ids"]) + 1 for d in docs)  # each document plus its EOS
    assert small["n"] == large["n"] == n_tokens
    assert small["characters"] == sum(map(len, docs))
    metrics = large["metrics"]
    assert metrics["bits_per_char"] == pytest.approx(metrics["loss"] * n_tokens / small["characters"] / math.log(2))
    with pytest.raises(InvalidInputError, match="empty"):
        evaluate_lm(loaded.model, loaded.tokenizer, ["  "])


def test_seeded_generation_repeats_and_explains_each_token(trained):
    from leptonkit.registry.loading import load_model

    registry, version, _, _ = trained
    loaded = load_model(version.ref, registry=registry)
    first = generate(loaded.model, loaded.tokenizer, "Once upon a time", max_tokens=6, seed=7, explain=2)
    again = generate(loaded.model, loaded.tokenizer, "Once upon a time", max_tokens=6, seed=7, explain=2)
    assert first["text"] == again["text"]
    assert len(first["tokens"]) == 6 or first["finish_reason"] == "stop"
    for step in first["tokens"]:
        assert 0 < step["prob"] <= 1 and len(step["runners_up"]) == 2
        assert step["runners_up"][0]["prob"] >= step["runners_up"][1]["prob"]
    greedy = generate(loaded.model, loaded.tokenizer, "Once upon a time", max_tokens=6, temperature=0, explain=1)
    for step in greedy["tokens"]:  # greedy picks the most probable token: no runner-up beats it
        assert step["prob"] >= step["runners_up"][0]["prob"]


def test_mlm_continues_minilm_on_domain_text(tmp_path):
    registry = Registry(tmp_path / "home")
    corpus = tmp_path / "domain.txt"
    corpus.write_text(SAMPLE.read_text()[:6_000])
    settings = {"objective": "mlm", "block_size": 32, "samples": 0}
    mlm = recipe(corpus, tmp_path / "run", **settings).model_copy(
        update={"base": "builtin:minilm", "name": "minilm-ts"}
    )
    mlm.train.max_steps, mlm.train.batch_size, mlm.train.checkpoint_every = 2, 4, None
    version = pretrain.run(mlm, registry=registry, log=lambda _: None)
    assert version.task == "fill-mask" and version.lineage["continued_from"] == "builtin:minilm"
    assert version.metrics["valid"]["loss"] > 0
    from transformers import AutoModelForMaskedLM

    assert AutoModelForMaskedLM.from_pretrained(version.path).config.model_type == "bert"


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"LEPTONKIT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "leptonkit.cli.main", *args], capture_output=True, text=True, env=env)


def test_cli_generates_evaluates_and_refuses_a_binary_corpus(trained, tmp_path):
    import json

    registry, version, _, _ = trained
    out = _cli(registry.home, "generate", version.ref, "Once upon", "--max-tokens", "4", "--seed", "1", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["prompt"] == "Once upon" and result["finish_reason"] in ("stop", "length")
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(SAMPLE.read_text()[-3_000:])
    out = _cli(registry.home, "eval", version.ref, "--data", str(held_out), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["task"] == "lm" and result["n"] >= 1
    metrics = result["metrics"]
    documents = split_documents(held_out.read_text())
    assert (result["n"], metrics["characters"]) == (len(documents), sum(map(len, documents)))
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert metrics["bits_per_char"] == pytest.approx(
        metrics["loss"] * metrics["tokens"] / metrics["characters"] / math.log(2)
    )
    assert registry.get(version.ref).metrics["test"]["loss"] == pytest.approx(metrics["loss"])  # stored on the version
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    bad = _cli(registry.home, "pretrain", "--data", str(binary), "--name", "x")
    assert bad.returncode == 2
    assert (
        bad.stderr.strip().splitlines()[-1]
        == f"error: corpus file {binary} is binary (it holds NUL bytes) (give UTF-8 text files)"
    )


def test_held_out_tail_is_the_corpus_end_cut_at_a_line_break():
    from leptonkit.train.corpus import hold_out_tail

    play = "".join(f"line {i:02d} of the play\n" for i in range(20))  # 20 lines of 20 characters
    train, held = hold_out_tail([play], 0.1)
    assert held == ["line 18 of the play\nline 19 of the play\n"]  # the last 10%, whole lines
    assert train[0] + "\n" + held[0] == play
    train, held = hold_out_tail(["a" * 50, "b" * 30, "c" * 20], 0.2)
    assert (train, held) == (["a" * 50, "b" * 30], ["c" * 20])  # whole documents when they fit
    with pytest.raises(InvalidInputError, match="too small to hold out 10%"):
        hold_out_tail(["hi"], 0.1)
