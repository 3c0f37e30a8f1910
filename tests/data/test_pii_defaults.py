"""PII defaults per task in ``data prepare``: direct identifiers replaced, quasi-identifiers (dates, places) kept
unless asked for, NER entities pseudonymised with tags aligned; the manifest records what was done and why.
Chinese and English text; every example is made here."""

from __future__ import annotations

import json
import warnings

import pytest

from leptonkit.data import prepare
from leptonkit.data.deidentify import parse_types
from leptonkit.errors import InvalidInputError
from leptonkit.privacy.recognizers import cn_id_check_digit

ID = "11010119900307451" + cn_id_check_digit("11010119900307451")
ROWS = [
    {"text": f"我叫王秀英，手机13812345678，身份证{ID}，2019年住在上海", "label": "a"},
    {"text": "John Smith lives in Paris since 2019, mail john@example.org", "label": "b"},
    {"text": "这家店在北京，菜不错", "label": "a"},
    {"text": "A quiet film set in Rome in 1999", "label": "b"},
]


def run(tmp_path, name: str, rows: list[dict], task: str = "classification", **options) -> tuple[dict, list[dict]]:
    src = tmp_path / f"{name}.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manifest = prepare([src], task=task, out=tmp_path / name, split="1,0", dedup="off", **options)
    written = (tmp_path / name / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return manifest, [json.loads(line) for line in written]


def test_direct_identifiers_are_masked_and_places_and_dates_kept_by_default(tmp_path, home):
    manifest, rows = run(tmp_path, "default", ROWS)
    texts = [r["text"] for r in rows]
    assert texts == [
        "我叫[PERSON]，手机[PHONE]，身份证[CN_ID_CARD]，2019年住在上海",
        "[PERSON] lives in Paris since 2019, mail [EMAIL]",
        "这家店在北京，菜不错",
        "A quiet film set in Rome in 1999",
    ]
    pii = manifest["pii"]
    assert pii["mode"] == "mask" and pii["kept"] == ["DATE", "LOCATION", "ORGANIZATION"]
    assert "PERSON" in pii["types"] and "DATE" not in pii["types"] and pii["names_by"].startswith("word lists")
    assert any("quasi-identifiers" in why and "kept" in why for why in pii["why"])
    assert pii["counts"] == {"CN_ID_CARD": 1, "EMAIL": 1, "PERSON": 2, "PHONE": 1}

    opted, rows = run(tmp_path, "places", ROWS, pii_types="direct,LOCATION")
    assert [r["text"] for r in rows][1:] == [
        "[PERSON] lives in [LOCATION] since 2019, mail [EMAIL]",
        "这家店在[LOCATION]，菜不错",
        "A quiet film set in [LOCATION] in 1999",
    ]
    assert opted["pii"]["kept"] == ["DATE", "ORGANIZATION"] and any("LOCATION" in w for w in opted["pii"]["why"])


def test_chinese_text_pseudonymised_with_chinese_fakes_or_dropped(tmp_path, home):
    fake, rows = run(tmp_path, "fake", ROWS[:1] + ROWS[2:], pii="pseudonymize", pii_key="k")
    text = rows[0]["text"]
    assert "王秀英" not in text and "13812345678" not in text and ID not in text
    assert text.startswith("我叫") and "，2019年住在上海" in text and fake["pii"]["key"] == "given"
    name = text[2 : text.index("，")]
    assert 2 <= len(name) <= 4 and all("\u4e00" <= c <= "\u9fff" for c in name)
    dropped, rows = run(tmp_path, "drop", ROWS, pii="drop")
    assert dropped["dropped"] == {"pii": 2} and [r["text"] for r in rows] == [ROWS[2]["text"], ROWS[3]["text"]]


def test_ner_entities_are_pseudonymised_by_their_tags_and_stay_aligned(tmp_path, home):
    english = {
        "tokens": ["Thatcherton", "met", "Ann", "Lee", "in", "Rome", "1999", "mail", "ann@example.org"],
        "tags": ["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "O", "O", "O"],
    }
    chinese = {"tokens": list("我叫王秀英住在北京电话13812345678"), "tags": ["O"] * 22}
    chinese["tags"][2:5] = ["B-PER", "I-PER", "I-PER"]
    chinese["tags"][7:9] = ["B-LOC", "I-LOC"]
    org = {"tokens": ["The", "European", "Commission", "said", "so"], "tags": ["O", "B-ORG", "I-ORG", "O", "O"]}
    manifest, (en, zh, kept) = run(tmp_path, "ner", [english, chinese, org], task="ner", pii_key="k")
    assert kept == org  # the name rules would read a person here; in NER data the tags decide
    assert manifest["pii"]["mode"] == "pseudonymize" and any(
        "NER data is pseudonymised" in w for w in manifest["pii"]["why"]
    )
    assert len(en["tokens"]) == len(en["tags"]) and len(zh["tokens"]) == len(zh["tags"])
    # a surname alone that no rule finds is still replaced: the tags say it is a name
    assert "Thatcherton" not in en["tokens"] and en["tags"][0] == "B-PER"
    assert not {"Ann", "Lee", "ann@example.org"} & set(en["tokens"])
    assert en["tokens"][-5:-2] == ["in", "Rome", "1999"] and "B-LOC" in en["tags"]  # places and years kept
    # character-level Chinese: the fake name and phone are characters again, the place is kept
    assert "".join(zh["tokens"][:2]) == "我叫" and "王秀英" not in "".join(zh["tokens"])
    assert all(len(t) == 1 for t in zh["tokens"]) and "北京" in "".join(zh["tokens"])
    assert "13812345678" not in "".join(zh["tokens"]) and zh["tags"][2] == "B-PER"
    masked, (en, *_) = run(tmp_path, "ner-mask", [english, chinese], task="ner", pii="mask")
    assert en["tokens"][:3] == ["[PERSON]", "met", "[PERSON]"] and en["tags"][:3] == ["B-PER", "O", "B-PER"]
    assert any("--pii pseudonymize keeps them learnable" in w for w in masked["warnings"])


def test_pii_types_groups_and_errors():
    assert parse_types("quasi") == ("DATE", "LOCATION", "ORGANIZATION")
    assert "LOCATION" in parse_types("direct,location") and "DATE" not in parse_types("direct,location")
    with pytest.raises(InvalidInputError, match="unknown --pii-types entry 'NAMES'"):
        parse_types("direct,NAMES")
