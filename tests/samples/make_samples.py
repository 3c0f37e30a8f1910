"""Rebuild the test samples in this folder: slices of the full data sets in ``../shared/data`` (kept beside the
repository for benchmarks, never read by tests), and a Faker-made PII file. ``instructions/instructions.json`` is
written by hand and not rebuilt here.

    python tests/samples/make_samples.py [--shared PATH]

Every slice is the *beginning* of its source file, copied byte for byte and cut at a record boundary, so that a
sample can be checked against its source with ``head``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data"

SST2_TRAIN_ROWS = 1000
SST2_DEV_ROWS = 300
CONLL_LINES = {"train.txt": 1400, "valid.txt": 1000, "test.txt": 1400}
SHAKESPEARE_CHARS = 30_000
PII_RECORDS = 100
PII_SEED = 16


def head_lines(source: Path, lines: int, *, blank_cut: bool) -> str:
    """The first ``lines`` lines of ``source``; with ``blank_cut``, continued up to the next blank line (kept)."""
    out: list[str] = []
    with source.open(encoding="utf-8", newline="") as handle:
        for line in handle:
            out.append(line)
            if len(out) >= lines and (not blank_cut or not line.strip()):
                break
    return "".join(out)


def head_blocks(source: Path, chars: int) -> str:
    """The beginning of ``source``: at least ``chars`` characters, cut after the next blank line."""
    text = source.read_text(encoding="utf-8")
    cut = text.index("\n\n", chars) + 2
    return text[:cut]


# Sentence templates for the PII sample; each {FIELD} is filled by Faker and labelled with its presidio type.
PII_TEMPLATES = [
    "Please send the invoice to {PERSON} at {EMAIL_ADDRESS} before Friday.",
    "My card {CREDIT_CARD} was charged twice, call me on {PHONE_NUMBER}.",
    "Ship it to {STREET_ADDRESS}, attention {PERSON}.",
    "The login came from {IP_ADDRESS} and the account owner is {PERSON}.",
    "Wire the refund to {IBAN_CODE} in the name of {PERSON}.",
    "Her SSN is {US_SSN} and she was born on {DATE_TIME}.",
    "{PERSON} from {ORGANIZATION} asked for a callback on {PHONE_NUMBER}.",
    "Our office moved to {GPE} last spring; write to {EMAIL_ADDRESS}.",
    "Docs are on {DOMAIN_NAME}, ask {PERSON} for access.",
    "Nothing personal in this ticket: the build failed again after the update.",
]


def pii_records(count: int, seed: int) -> list[dict]:
    """``count`` presidio-research-format records, each gold span exactly where its Faker value was put."""
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(seed)
    rng = random.Random(seed)
    values = {
        "PERSON": fake.name,
        "EMAIL_ADDRESS": fake.email,
        "CREDIT_CARD": fake.credit_card_number,
        "PHONE_NUMBER": fake.phone_number,
        "STREET_ADDRESS": lambda: fake.street_address() + ", " + fake.city(),
        "IP_ADDRESS": fake.ipv4_public,
        "IBAN_CODE": fake.iban,
        "US_SSN": fake.ssn,
        "DATE_TIME": lambda: fake.date(pattern="%B %d, %Y"),
        "ORGANIZATION": fake.company,
        "GPE": fake.city,
        "DOMAIN_NAME": fake.domain_name,
    }
    records = []
    for _ in range(count):
        template = rng.choice(PII_TEMPLATES)
        text, spans, rest = "", [], template
        while "{" in rest:
            before, _, after = rest.partition("{")
            kind, _, rest = after.partition("}")
            text += before
            value = values[kind]()
            spans.append(
                {
                    "entity_type": kind,
                    "entity_value": value,
                    "start_position": len(text),
                    "end_position": len(text) + len(value),
                }
            )
            text += value
        records.append({"full_text": text + rest, "masked": template, "spans": spans})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED, help="the folder holding sst2/, conll2003/, ...")
    shared = parser.parse_args().shared

    (HERE / "sst2").mkdir(exist_ok=True)
    for name, rows in (("train.tsv", SST2_TRAIN_ROWS), ("dev.tsv", SST2_DEV_ROWS)):
        (HERE / "sst2" / name).write_text(head_lines(shared / "sst2" / name, rows + 1, blank_cut=False))
    (HERE / "conll2003").mkdir(exist_ok=True)
    for name, lines in CONLL_LINES.items():
        (HERE / "conll2003" / name).write_text(head_lines(shared / "conll2003" / name, lines, blank_cut=True))
    (HERE / "tinyshakespeare").mkdir(exist_ok=True)
    text = head_blocks(shared / "tinyshakespeare" / "input.txt", SHAKESPEARE_CHARS)
    (HERE / "tinyshakespeare" / "input.txt").write_text(text)
    (HERE / "pii").mkdir(exist_ok=True)
    records = pii_records(PII_RECORDS, PII_SEED)
    lines = ",\n".join(json.dumps(r, ensure_ascii=False) for r in records)  # one record a line
    (HERE / "pii" / "synthetic_pii.json").write_text(f"[\n{lines}\n]\n")


if __name__ == "__main__":
    main()
