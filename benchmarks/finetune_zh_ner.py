"""MiniLM (English vocabulary) fine-tuned for NER on character-level Chinese: what accuracy to expect; appends a run
to ``benchmarks/results/finetune_zh_ner.json``.

The data is the Chinese PII set of ``make_pii_zh.py`` written as CoNLL files, one character a token (as Chinese NER
corpora are): PERSON -> PER, LOCATION -> LOC, STREET_ADDRESS -> ADDR, everything else O. Train: the dev half; valid
and test: the test half's records, alternately (disjoint templates from train). ``data prepare`` reads the CoNLL
files (``--pii off``: the names are the labels); ``builtin:minilm`` is fine-tuned in full. The run also records how
many of the Han characters MiniLM's WordPiece vocabulary maps to ``[UNK]``.

    .venv/bin/python benchmarks/finetune_zh_ner.py --epochs 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from finetune_common import finetune_once, machine, write_result
from leptonkit.train.recipe import NER_FULL_TRAIN

DATA = Path(__file__).resolve().parent / "data"
TAGS = {"PERSON": "PER", "LOCATION": "LOC", "STREET_ADDRESS": "ADDR"}


def conll(records: list[dict]) -> str:
    """One character a line (``CHAR TAG``), a blank line between records; whitespace characters are left out."""
    blocks = []
    for record in records:
        text = record["full_text"]
        tags = ["O"] * len(text)
        for span in record["spans"]:
            kind = TAGS.get(span["entity_type"])
            if kind:
                for i in range(span["start_position"], span["end_position"]):
                    tags[i] = ("B-" if i == span["start_position"] else "I-") + kind
        lines = [f"{c} {t}" for c, t in zip(text, tags, strict=True) if not c.isspace()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def unknown_share(records: list[dict]) -> dict[str, float]:
    from transformers import AutoTokenizer

    from leptonkit.registry.store import builtin_source

    vocab = AutoTokenizer.from_pretrained(builtin_source("builtin:minilm")[0]).get_vocab()
    han = [c for r in records for c in r["full_text"] if "\u4e00" <= c <= "\u9fff"]
    return {
        "han_characters": len(han),
        "unk_share": round(sum(c not in vocab for c in han) / len(han), 4),
        "vocab_cjk_characters": sum(len(t) == 1 and "\u4e00" <= t <= "\u9fff" for t in vocab),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=NER_FULL_TRAIN["batch_size"])
    args = parser.parse_args()
    info = machine()
    from leptonkit.data import prepare

    train = json.loads((DATA / "pii_zh_dev.json").read_text(encoding="utf-8"))
    held_out = json.loads((DATA / "pii_zh_test.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        for name, records in (("train", train), ("valid", held_out[0::2]), ("test", held_out[1::2])):
            (raw / f"{name}.conll").write_text(conll(records), encoding="utf-8")
        data = Path(tmp) / "prepared"
        files = [str(raw / f"{name}.conll") for name in ("train", "valid", "test")]
        prepare(files, task="ner", out=data, pii="off", dedup="off")
        run = finetune_once(
            data, "ner", "full", Path(tmp) / "home", epochs=args.epochs, batch_size=args.batch_size,
            lr=NER_FULL_TRAIN["lr"],
        )  # fmt: skip
    result = {
        "setup": {"base": "builtin:minilm", "epochs": args.epochs, "batch_size": args.batch_size,
                  "train_records": len(train), "test_records": len(held_out[1::2]), "tags": TAGS},
        "vocabulary": unknown_share(train + held_out),
        "test": run["metrics"]["test"],
        "test_entity_f1": run["metrics"]["test"].get("entity_f1"),
        "train_seconds": run["metrics"]["training"]["train_seconds"],
    }  # fmt: skip
    write_result("finetune_zh_ner", result, info)
    print(json.dumps({k: v for k, v in result.items() if k != "test"}), json.dumps(result["test"])[:800])


if __name__ == "__main__":
    main()
