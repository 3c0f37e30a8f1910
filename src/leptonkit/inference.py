"""Batched, gradient-free inference on a :class:`~leptonkit.registry.loading.LoadedModel`.

The agreed API every stage calls (serving, evaluation, explanations, data):

- :func:`classify` -> ``[{"label", "score", "scores": {label: score}}]``, one per text;
- :func:`extract_entities` -> ``[[{"type", "text", "start", "end", "score"}]]``, character offsets into each text;
- :func:`embed` -> ``[[float]]``, mean-pooled over real tokens and L2-normalised.

Inputs are sorted by length before batching so that each batch pads only to its own longest member.
NER models predict one tag per *word* (the label of its first sub-word); words come from the tokenizer's own
pre-tokenizer, and their character spans from its offset mapping, so entity offsets always index the input text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from leptonkit.errors import InvalidInputError
from leptonkit.registry.loading import LoadedModel

DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_LENGTH = 512


def _batches(items: Sequence[Any], batch_size: int, key: Any) -> Iterator[list[int]]:
    """Index batches over ``items`` sorted by ``key`` (length), so padding stays small."""
    order = sorted(range(len(items)), key=lambda i: key(items[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _max_length(loaded: LoadedModel) -> int:
    limit = getattr(loaded.tokenizer, "model_max_length", DEFAULT_MAX_LENGTH)
    return min(limit, DEFAULT_MAX_LENGTH)


def _encode(loaded: LoadedModel, inputs: list, **options: Any) -> Any:
    """``inputs`` tokenized as one PyTorch batch, padded to its longest and truncated to :func:`_max_length`."""
    return loaded.tokenizer(
        inputs, padding=True, truncation=True, max_length=_max_length(loaded), return_tensors="pt", **options
    )


def _labels(loaded: LoadedModel) -> list[str]:
    if loaded.labels:
        return loaded.labels
    id2label = getattr(loaded.model.config, "id2label", None)
    if not id2label:
        raise InvalidInputError(f"{loaded.path} has no labels", hint="load a classification or NER model")
    return [id2label[i] for i in range(len(id2label))]


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise InvalidInputError("texts must be a list of strings", param="texts")


@torch.inference_mode()
def classify(loaded: LoadedModel, texts: list[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> list[dict]:
    """Label each text: the top label, its probability and every label's probability."""
    _check_texts(texts)
    labels = _labels(loaded)
    results: list[dict] = [{} for _ in texts]
    device = _device(loaded.model)
    for idx in _batches(texts, batch_size, len):
        enc = _encode(loaded, [texts[i] for i in idx]).to(device)
        probs = loaded.model(**enc).logits.float().softmax(-1).cpu()
        for row, i in zip(probs.tolist(), idx, strict=True):
            best = max(range(len(row)), key=row.__getitem__)
            results[i] = {"label": labels[best], "score": row[best], "scores": dict(zip(labels, row, strict=True))}
    return results


def _word_tags(loaded: LoadedModel, enc: Any, n: int, n_words: list[int]) -> list[list[tuple[str, float]]]:
    """Per sequence, ``(tag, probability)`` for each word, from the first sub-word of the word.

    Words cut off by truncation get ``("O", 0.0)`` so that callers always receive one tag per word.
    """
    labels = _labels(loaded)
    model_inputs = {k: v for k, v in enc.items() if k != "offset_mapping"}
    probs = loaded.model(**model_inputs).logits.float().softmax(-1).cpu()
    best_p, best = probs.max(-1)
    out = []
    for b in range(n):
        tags: list[tuple[str, float]] = [("O", 0.0)] * n_words[b]
        seen = set()
        for t, w in enumerate(enc.word_ids(b)):
            if w is None or w in seen:
                continue
            seen.add(w)
            tags[w] = (labels[int(best[b, t])], float(best_p[b, t]))
        out.append(tags)
    return out


@torch.inference_mode()
def tag_words(
    loaded: LoadedModel, sentences: list[list[str]], *, batch_size: int = DEFAULT_BATCH_SIZE
) -> list[list[str]]:
    """IOB2 tags for pre-split words (one tag per word), as NER evaluation needs them."""
    results: list[list[str]] = [[] for _ in sentences]
    device = _device(loaded.model)
    for idx in _batches(sentences, batch_size, len):
        words = [sentences[i] for i in idx]
        enc = _encode(loaded, words, is_split_into_words=True)
        tagged = _word_tags(loaded, enc.to(device), len(idx), [len(w) for w in words])
        for i, tags in zip(idx, tagged, strict=True):
            results[i] = [tag for tag, _ in tags]
    return results


def _word_spans(enc: Any, b: int) -> list[tuple[int, int]]:
    """Character span of each word of sequence ``b``, from its sub-words' offsets."""
    spans: dict[int, list[int]] = {}
    for t, w in enumerate(enc.word_ids(b)):
        if w is None:
            continue
        start, end = (int(x) for x in enc["offset_mapping"][b][t])
        if w in spans:
            spans[w][1] = end
        else:
            spans[w] = [start, end]
    return [tuple(spans[w]) for w in sorted(spans)]


def decode_entities(text: str, spans: list[tuple[int, int]], tags: list[tuple[str, float]]) -> list[dict]:
    """IOB2 word tags to entities; an ``I-X`` that does not continue an ``X`` starts a new entity (as seqeval does)."""
    entities: list[dict] = []
    current: dict | None = None
    scores: list[float] = []

    def close() -> None:
        if current is not None:
            current["text"] = text[current["start"] : current["end"]]
            current["score"] = sum(scores) / len(scores)
            entities.append(current)

    for (start, end), (tag, score) in zip(spans, tags, strict=True):
        prefix, _, kind = tag.partition("-")
        if prefix == "I" and current is not None and current["type"] == kind:
            current["end"] = end
            scores.append(score)
            continue
        close()
        current, scores = None, []
        if prefix in ("B", "I") and kind:
            current, scores = {"type": kind, "start": start, "end": end}, [score]
    close()
    return entities


@torch.inference_mode()
def extract_entities(
    loaded: LoadedModel, texts: list[str], *, batch_size: int = DEFAULT_BATCH_SIZE
) -> list[list[dict]]:
    """Entities in each text: ``{"type", "text", "start", "end", "score"}`` with ``text[start:end] == entity text``."""
    _check_texts(texts)
    results: list[list[dict]] = [[] for _ in texts]
    device = _device(loaded.model)
    for idx in _batches(texts, batch_size, len):
        batch = [texts[i] for i in idx]
        enc = _encode(loaded, batch, return_offsets_mapping=True)
        spans = [_word_spans(enc, b) for b in range(len(idx))]
        tagged = _word_tags(loaded, enc.to(device), len(idx), [len(s) for s in spans])
        for b, i in enumerate(idx):
            results[i] = decode_entities(texts[i], spans[b], tagged[b])
    return results


@torch.inference_mode()
def embed(loaded: LoadedModel, texts: list[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> list[list[float]]:
    """Sentence embeddings: the last hidden layer mean-pooled over non-padding tokens, L2-normalised."""
    _check_texts(texts)
    results: list[list[float]] = [[] for _ in texts]
    device = _device(loaded.model)
    for idx in _batches(texts, batch_size, len):
        enc = _encode(loaded, [texts[i] for i in idx]).to(device)
        out = loaded.model(**enc, output_hidden_states=True)
        hidden = out.hidden_states[-1].float()
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        for vector, i in zip(torch.nn.functional.normalize(pooled, dim=-1).cpu().tolist(), idx, strict=True):
            results[i] = vector
    return results
