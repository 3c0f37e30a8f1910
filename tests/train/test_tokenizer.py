"""Byte-level BPE training, special tokens, chat template, corpus checks and packing into blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from leptonkit.errors import InvalidInputError
from leptonkit.train.corpus import read_text_file
from leptonkit.train.packing import pack_documents, pack_examples
from leptonkit.train.tokenizer import (
    BOS,
    EOS,
    IM_END,
    IM_START,
    PAD,
    train_tokenizer,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "tinystories_sample.txt"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A 400-token BPE trained on 60 KB of the bundled TinyStories sample, saved and reloaded with AutoTokenizer."""
    from transformers import AutoTokenizer

    text = SAMPLE.read_text()[:60_000]
    folder = tmp_path_factory.mktemp("tok")
    train_tokenizer(text.splitlines(), vocab_size=400).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def test_vocabulary_size_and_special_tokens_are_single_ids(tokenizer):
    assert len(tokenizer) == 400
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (BOS, EOS, PAD)
    for token in (BOS, EOS, PAD, IM_START, IM_END):
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]
    assert len({tokenizer.convert_tokens_to_ids(t) for t in (BOS, EOS, PAD, IM_START, IM_END)}) == 5


def test_merges_learned_from_the_corpus_and_any_text_round_trips(tokenizer):
    common = " the little girl"
    assert len(tokenizer(common)["input_ids"]) < len(common.encode()) / 2  # merges learned from the stories
    unseen = "Ünïcödé 🙂 tabs\tand  spaces\n\nand ☃ never seen"
    ids = tokenizer(unseen, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == unseen  # byte-level: nothing is unknown, nothing lost


def test_chat_template_is_saved_and_masks_the_assistant_reply(tokenizer):
    messages = [{"role": "user", "content": "Who is Lily?"}, {"role": "assistant", "content": "A little girl."}]
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert tokenizer.decode(ids).startswith(f"{IM_START}user\nWho is Lily?{IM_END}\n{IM_START}assistant\n")
    assert tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m]) == f"A little girl.{IM_END}"
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith(f"{IM_START}assistant\n")


def test_vocabulary_below_the_byte_alphabet_is_refused():
    with pytest.raises(InvalidInputError, match="vocabulary size 100 is too small"):
        train_tokenizer(["some text"], vocab_size=100)


def test_empty_corpus_is_refused():
    with pytest.raises(InvalidInputError, match="holds no text"):
        train_tokenizer(["", "  \n"], vocab_size=300)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"  \n\n", "is empty"), (b"\x7fELF\x00\x01\x02", "is binary"), (b"caf\xe9", "not UTF-8")],
)
def test_corpus_files_that_are_not_text_are_refused(tmp_path, content, message):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=message):
        read_text_file(path)


def test_packing_puts_eos_between_documents_and_counts_the_dropped_tail():
    packed = pack_documents([[1, 2, 3], [4, 5], [6, 7, 8, 9]], block_size=4, eos_id=0)
    # stream: 1 2 3 0 | 4 5 0 6 | 7 8 9 0 -> exactly three blocks, nothing dropped
    assert packed.input_ids.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    assert (packed.documents, packed.tokens, packed.dropped_tokens) == (3, 12, 0)
    assert packed.labels is None
    short = pack_documents([[1, 2, 3], [4, 5, 6]], block_size=3, eos_id=0)
    assert short.input_ids.tolist() == [[1, 2, 3], [0, 4, 5]]
    assert short.dropped_tokens == 2  # "6 EOS" did not fill a block, and is counted


def test_packing_keeps_labels_with_their_tokens():
    packed = pack_examples([([1, 2, 3], [-100, 2, 3]), ([4, 5, 6], [-100, -100, 6])], block_size=2)
    assert packed.input_ids.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert packed.labels.tolist() == [[-100, 2], [3, -100], [-100, 6]]


def test_corpus_smaller_than_one_block_is_refused():
    with pytest.raises(InvalidInputError, match="fewer than one block of 64"):
        pack_documents([[1, 2, 3]], block_size=64, eos_id=0)
