"""Records of the data contract to model inputs: token ids and aligned label ids, padded later per batch."""

from __future__ import annotations

from typing import Any

IGNORE = -100  # label id the loss skips: special tokens and the non-first sub-words of a word


def encode_classification(
    records: list[dict], tokenizer: Any, label2id: dict[str, int], max_length: int
) -> list[dict[str, Any]]:
    encoded = tokenizer([r["text"] for r in records], truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": label2id[str(r["label"])]}
        for ids, mask, r in zip(encoded["input_ids"], encoded["attention_mask"], records, strict=True)
    ]


def encode_ner(records: list[dict], tokenizer: Any, label2id: dict[str, int], max_length: int) -> list[dict[str, Any]]:
    """Words to sub-words; each word's tag goes to its first sub-word, the rest are ignored by the loss."""
    encoded = tokenizer(
        [r["tokens"] for r in records], is_split_into_words=True, truncation=True, max_length=max_length
    )
    out = []
    for b, record in enumerate(records):
        labels, previous = [], None
        for word in encoded.word_ids(b):
            labels.append(IGNORE if word is None or word == previous else label2id[record["tags"][word]])
            previous = word
        out.append(
            {"input_ids": encoded["input_ids"][b], "attention_mask": encoded["attention_mask"][b], "labels": labels}
        )
    return out
