"""Explain one prediction of a classification or NER model: which words pushed it, and how hard.

:func:`explain` returns plain JSON-able dicts, the shape the CLI prints and the server returns:

- classification: ``{"label", "score", "method", "attributions": [{"word", "start", "end", "score"}], "logit",
  "baseline_logit", "delta", "truncated"}`` for the predicted label, or the label the caller names;
- NER: ``{"method", "entities": [{"type", "text", "start", "end", "score", "attributions": [...], ...}],
  "truncated"}``, one attribution list per entity found by :func:`leptonkit.inference.extract_entities`. An entity's
  explained quantity is the sum of the logits of its words' predicted tags (first sub-word of each word, as the
  tagger itself decides).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from leptonkit.explain.attribution import TokenAttributions, attribute, baseline_ids
from leptonkit.explain.checks import DEFAULT_STEPS, check_request, labels_of
from leptonkit.explain.words import aggregate
from leptonkit.inference import DEFAULT_MAX_LENGTH, extract_entities
from leptonkit.registry.loading import LoadedModel


@dataclass
class _Encoded:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    baseline: torch.Tensor
    offsets: list[tuple[int, int]]
    special: list[bool]
    word_ids: list[int | None]


def _encode(loaded: LoadedModel, text: str) -> _Encoded:
    tokenizer = loaded.tokenizer
    positions = getattr(loaded.model.config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
    max_length = min(getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH), DEFAULT_MAX_LENGTH, positions)
    enc = tokenizer(
        text,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_tensors="pt",
    )
    device = next(loaded.model.parameters()).device
    input_ids = enc["input_ids"].to(device)
    special = enc["special_tokens_mask"].to(device)
    return _Encoded(
        input_ids=input_ids,
        attention_mask=enc["attention_mask"].to(device),
        baseline=baseline_ids(input_ids, special, tokenizer),
        offsets=[(int(s), int(e)) for s, e in enc["offset_mapping"][0].tolist()],
        special=[bool(x) for x in enc["special_tokens_mask"][0].tolist()],
        word_ids=enc.word_ids(0),
    )


def _attribute(loaded: LoadedModel, enc: _Encoded, target_fn, method: str, steps: int) -> TokenAttributions:
    return attribute(
        loaded.model, enc.input_ids, enc.attention_mask, enc.baseline, target_fn, method=method, steps=steps
    )


def _report(text: str, enc: _Encoded, tokens: TokenAttributions) -> dict:
    words, truncated = aggregate(text, tokens.scores, enc.offsets, enc.special)
    return {
        "attributions": [w.to_dict() for w in words],
        "logit": tokens.target_value,
        "baseline_logit": tokens.baseline_value,
        "delta": tokens.delta,
        "truncated": truncated,
    }


def explain(
    loaded: LoadedModel, text: str, *, label: str | None = None, method: str = "ig", steps: int = DEFAULT_STEPS
) -> dict:
    """Word attributions for the prediction of ``loaded`` on ``text`` (see the module docstring for the shape)."""
    check_request(loaded, text, label=label, method=method, steps=steps)
    enc = _encode(loaded, text)
    with torch.no_grad():
        logits = loaded.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits[0].float()
    if loaded.task == "classification":
        return _explain_label(loaded, text, enc, logits, label, method, steps)
    return _explain_entities(loaded, text, enc, logits, label, method, steps)


def _explain_label(loaded, text, enc, logits, label, method, steps) -> dict:
    labels = labels_of(loaded)
    index = labels.index(label) if label is not None else int(logits.argmax())
    tokens = _attribute(loaded, enc, lambda out: out[:, index], method, steps)
    score = float(logits.softmax(-1)[index])
    return {"label": labels[index], "score": score, "method": method} | _report(text, enc, tokens)


def _explain_entities(loaded, text, enc, logits, label, method, steps) -> dict:
    entities = [e for e in extract_entities(loaded, [text])[0] if label is None or e["type"] == label]
    predicted = logits.argmax(-1)
    first_pieces = [t for t, w in enumerate(enc.word_ids) if w is not None and (t == 0 or enc.word_ids[t - 1] != w)]
    results = []
    truncated = False
    for entity in entities:
        positions = [
            t for t in first_pieces if enc.offsets[t][0] < entity["end"] and enc.offsets[t][1] > entity["start"]
        ]
        pos = torch.tensor(positions, device=logits.device)
        tags = predicted[pos]
        tokens = _attribute(loaded, enc, lambda out, pos=pos, tags=tags: out[:, pos, tags].sum(-1), method, steps)
        report = _report(text, enc, tokens)
        truncated = report.pop("truncated")
        results.append(entity | {"method": method} | report)
    if not entities:
        truncated = aggregate(text, [0.0] * len(enc.offsets), enc.offsets, enc.special)[1]
    return {"method": method, "entities": results, "truncated": truncated}
