"""Instruction tuning of a tiny Llama on the shipped instruction sample (Alpaca format): LoRA adapter and full
model with packing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from leptonkit.errors import InvalidInputError
from leptonkit.registry import Registry
from leptonkit.train.recipe import validate_recipe
from leptonkit.train.recipes import sft
from tests.conftest import sample

TINY = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,
        "max_position_embeddings": 128}  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A registry holding a randomly initialised tiny Llama ``base:1`` (with a trained tokenizer), and 40 records."""
    from transformers import AutoModelForCausalLM

    from leptonkit.train.presets import llama_config
    from leptonkit.train.tokenizer import train_tokenizer

    records = json.loads(sample("instructions", "instructions.json").read_text())[:40]
    root = tmp_path_factory.mktemp("sft")
    data = root / "alpaca.json"
    data.write_text(json.dumps(records))
    tokenizer = train_tokenizer((r["instruction"] + " " + r["output"] for r in records), vocab_size=400)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(llama_config("tiny", vocab_size=0, tokenizer=tokenizer, **TINY))
    registry = Registry(root / "home")
    registry.register(model, name="base", tokenizer=tokenizer)
    return registry, data, root


def recipe(data: Path, run_dir: Path, **fields):
    train = {"max_steps": 4, "batch_size": 8, "max_length": 96, "lr": 1e-2, "precision": "fp32"}
    return validate_recipe(
        {"stage": "sft", "name": "chat", "base": "base", "data": str(data), "run_dir": str(run_dir), "train": train}
        | {"sft": {"samples": 1, "sample_tokens": 4}}
        | fields
    )


def test_lora_sft_on_a_prepared_folder_registers_an_adapter_that_learns_its_answers(setup, tmp_path):
    from leptonkit.registry.loading import load_model
    from leptonkit.train.sampling import generate
    from leptonkit.train.sft_data import load_conversations

    registry, data, _ = setup
    conversations = [{"messages": m} for m in load_conversations(data)[:12]]
    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(c) + "\n" for c in conversations))
    (folder / "valid.jsonl").write_text("".join(json.dumps(c) + "\n" for c in conversations[:6]))  # seen answers
    lines: list[str] = []
    lora = recipe(folder, tmp_path / "run", method="lora")
    lora.train.max_steps = 8
    version = sft.run(lora, registry=registry, log=lines.append)
    assert (version.kind, version.task, version.base) == ("adapter", "generation", "base:1")
    assert version.metrics["valid"]["loss"] < version.metrics["base"]["loss"] - 0.05  # it learned the answers
    assert lines[0].startswith("train: 12 conversations") and lines[1].startswith("held-out: 6 conversations")
    assert any("  Q: " in line for line in lines)  # sampled answers at each evaluation
    loaded = load_model(version.ref, registry=registry)
    assert type(loaded.model).__name__ == "PeftModelForCausalLM"
    assert loaded.tokenizer.chat_template is not None
    answer = generate(loaded.model, loaded.tokenizer, "Name a colour.", max_tokens=3, temperature=0, chat=True)
    assert answer["finish_reason"] in ("stop", "length")


def test_full_sft_with_packing_registers_a_model_linked_to_its_base(setup):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from leptonkit.train.sft_data import load_conversations

    registry, data, root = setup
    full = recipe(data, root / "full", method="full", sft={"packing": True, "samples": 0})
    full.train.max_length = 64  # cuts some conversations, and some prompts alone fill it
    # what the log must count, from the chat template itself: 36 conversations train (10% held out); one is cut when
    # longer than 64 tokens, dropped when its prompt alone fills them (no reply token left)
    tokenizer = AutoTokenizer.from_pretrained(registry.resolve("base"))

    def tokens(messages, **options) -> int:
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **options)["input_ids"])

    lengths = [(tokens(m), tokens(m[:1], add_generation_prompt=True)) for m in load_conversations(data)[:36]]
    cut, dropped = sum(n > 64 for n, _ in lengths), sum(prompt >= 64 for _, prompt in lengths)
    assert cut > dropped > 0
    lines: list[str] = []
    version = sft.run(full, registry=registry, log=lines.append)
    assert lines[0].startswith(
        f"train: 36 conversations, {36 - dropped} kept; {cut} cut to 64 tokens, {dropped} dropped"
    )
    assert any(line.startswith("packed into ") for line in lines)
    assert (version.kind, version.lineage["fine_tuned_from"], version.lineage["method"]) == ("model", "base:1", "full")
    assert AutoModelForCausalLM.from_pretrained(version.path).config.num_hidden_layers == 2


def test_a_record_without_output_stops_before_training(setup, tmp_path):
    registry, _, _ = setup
    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "Say hi.", "output": "Hi"}\n{"instruction": "Say bye.", "input": ""}\n')
    with pytest.raises(InvalidInputError, match=r"bad.jsonl:2: record has no 'output'"):
        sft.run(recipe(data, tmp_path / "run", method="lora"), registry=registry, log=print)
    assert not registry.list("chat") or all(v.lineage.get("data") != str(data) for v in registry.list("chat"))
