"""Pretraining on Chinese text: the byte-level BPE learns Chinese merges (a character is three UTF-8 bytes, a
common word becomes one token), and bits per character divide by characters, not bytes. The corpus is Faker
``zh_CN`` text made here (seeded word salad from its 346-word list: enough to learn merges from)."""

from __future__ import annotations

import math

import pytest

from leptonkit.registry import Registry
from leptonkit.train.lm_eval import evaluate_lm
from leptonkit.train.recipe import validate_recipe
from leptonkit.train.recipes import pretrain
from leptonkit.train.tokenizer import train_tokenizer
from tests.train.test_pretrain import recipe


def chinese_text(seed: int, paragraphs: int) -> str:
    from faker import Faker

    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    return "\n\n".join(fake.paragraph(nb_sentences=8).replace(".", "。") for _ in range(paragraphs)) + "\n"


def test_the_tokenizer_learns_chinese_merges():
    tokenizer = train_tokenizer(chinese_text(1, 300).splitlines(), vocab_size=2000)
    held_out = chinese_text(2, 20)
    ids = tokenizer(held_out, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == held_out  # byte-level: round trip
    assert len(held_out) / len(ids) > 1.5  # characters per token: words merged (unmerged bytes would give 1/3)
    pieces = [tokenizer.decode([i]) for i in ids]
    assert sum(len(p) >= 2 and all("\u4e00" <= c <= "\u9fff" for c in p) for p in pieces) > len(ids) / 3


@pytest.fixture(scope="module")
def trained_zh(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain-zh")
    corpus = root / "zh.txt"
    corpus.write_text(chinese_text(3, 200), encoding="utf-8")
    registry = Registry(root / "home")
    config = recipe(corpus, root / "run", vocab_size=600).model_dump()
    config["train"] |= {"max_steps": 2, "batch_size": 4, "checkpoint_every": 2, "eval_every": 2}
    version = pretrain.run(validate_recipe(config), registry=registry, log=lambda _: None)
    return registry, version


def test_chinese_pretrain_reports_bits_per_character_not_per_byte(trained_zh):
    from leptonkit.registry.loading import load_model

    registry, version = trained_zh
    valid = version.metrics["valid"]
    assert valid["loss"] < math.log(600) and valid["bits_per_char"] == pytest.approx(
        valid["nats_per_char"] / math.log(2)
    )
    loaded = load_model(version.ref, registry=registry)
    held_out = chinese_text(2, 5)
    # the run's own 600-token BPE merged Chinese bytes: unmerged, a character would be 3 tokens
    assert len(held_out) / len(loaded.tokenizer(held_out, add_special_tokens=False)["input_ids"]) > 0.6
    docs = ["我们今天去公园散步。", "这家餐厅的菜味道不错，就是等位时间有点长。"]
    result = evaluate_lm(loaded.model, loaded.tokenizer, docs)
    characters = sum(map(len, docs))
    assert result["characters"] == characters == 31 and sum(len(d.encode()) for d in docs) == 93
    nll = result["metrics"]["loss"] * result["n"]
    assert result["metrics"]["bits_per_char"] == pytest.approx(nll / characters / math.log(2))
