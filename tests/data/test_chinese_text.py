"""Chinese text through ``prepare``: near-duplicates found on character shingles, full-width forms normalised,
Traditional-to-Simplified conversion on request."""

from __future__ import annotations

import json
import os
from pathlib import Path

from leptonkit.data import prepare
from leptonkit.data.dedup import SHINGLE_CHARS, Deduplicator, shingle

HOTEL = (
    "酒店位置很好，离地铁站只有五分钟，房间干净整洁，前台服务热情，"
    "早餐种类也很丰富，隔音效果差了一点，下次出差还会再住。"
)
PHONE = (
    "iPhone 15 Pro收到了，屏幕显示细腻，A17芯片运行很流畅，拍照比旧手机强太多，就是充电有点慢，京东物流第二天就送到了。"
)
# Same topic, different reviews: a reader would keep all of them.
OTHER_HOTELS = [
    "酒店离火车站很近，但是房间很小，空调噪音很大，晚上几乎睡不着，早餐也很一般，不推荐。",
    "房间干净整洁，床很舒服，前台小姐姐服务很热情，还帮我们免费升级了房型，早餐种类丰富，五星好评。",
    "酒店位置不错，周边吃饭很方便，不过装修有点旧了，卫生间有异味，性价比一般，下次可能会换别家。",
]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def kept(out: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()]


def run(tmp_path: Path, texts: list[str], name: str = "out", **kwargs) -> tuple[dict, list[str]]:
    src = write_jsonl(tmp_path / f"{name}.jsonl", texts)
    options = dict(task="text", out=tmp_path / name, split="1,0,0", pii="off") | kwargs
    manifest = prepare([src], **options)
    return manifest, kept(tmp_path / name)


def test_chinese_text_is_shingled_on_characters_and_english_on_words():
    chinese = shingle("房间干净整洁，前台服务热情")
    assert "房 间 干".encode() in chinese and all(len(s.decode().split()) == SHINGLE_CHARS for s in chinese)
    english = shingle("the room was clean and quiet")
    assert b"the room was" in english and b"room was clean" in english
    # mixed script: a Latin word or a number is one token of a character shingle, never cut inside
    mixed = {s.decode() for s in shingle(PHONE.casefold())}
    assert "iphone 15 pro" in mixed and "a17 芯 片" in mixed
    assert all(token in {"iphone", "15", "pro", "a17"} or len(token) == 1 for s in mixed for token in s.split())


# Near-duplicates of HOTEL and PHONE (true character-trigram Jaccard 0.88 to 1.0).
NEAR = [
    HOTEL.replace("下次出差还会再住", "下次还会再住"),  # a clause shortened
    HOTEL.replace("隔音效果差了一点", "隔音效果差一点"),  # a clause retouched
    HOTEL.replace("，", ",").replace("。", "!"),  # punctuation only
    PHONE.replace("拍照比旧手机强太多", "拍照比旧手机强很多"),  # mixed script, a clause retouched
]
# A clause rewritten (true Jaccard 0.81 and 0.83): as with English, caught at a lower --near-threshold.
REWRITTEN = [HOTEL.replace("隔音效果差了一点", "隔音效果一般"), HOTEL.replace("前台服务热情", "前台服务很周到")]


def test_chinese_near_duplicates_are_dropped_at_the_default_threshold(tmp_path):
    exact, exact_kept = run(tmp_path, [HOTEL, PHONE, *NEAR], "exact", dedup="exact")
    assert exact["dropped"] == {} and len(exact_kept) == 6  # none of them is an exact repeat
    manifest, texts = run(tmp_path, [HOTEL, PHONE, *NEAR], "near")
    assert manifest["dropped"] == {"duplicate": 4}
    assert texts == [HOTEL, PHONE]


def test_near_duplicates_are_found_whatever_the_seed(tmp_path):
    """MinHash is a sample: the LSH banding must not lose pairs well above the threshold (it lost a quarter of
    the pairs at Jaccard 0.88 with datasketch's default bands)."""
    found = 0
    for seed in range(20):
        dedup = Deduplicator("near", seed=seed)
        dedup.check(HOTEL, "train"), dedup.check(PHONE, "train")
        found += sum(dedup.check(text, "train") == "duplicate" for text in NEAR)
    assert found >= 76  # of 80


def test_distinct_chinese_reviews_on_one_topic_are_kept(tmp_path):
    manifest, texts = run(tmp_path, [HOTEL, *OTHER_HOTELS], near_threshold=0.5)
    assert manifest["dropped"] == {}
    assert texts == [HOTEL, *OTHER_HOTELS]


def test_a_rewritten_clause_needs_a_lower_threshold_as_in_english(tmp_path):
    strict, _ = run(tmp_path, [HOTEL, OTHER_HOTELS[0], *REWRITTEN], "strict", near_threshold=0.9)
    lower, texts = run(tmp_path, [HOTEL, OTHER_HOTELS[0], *REWRITTEN], "lower", near_threshold=0.7)
    assert strict["dropped"] == {}
    assert lower["dropped"] == {"duplicate": 2} and texts == [HOTEL, OTHER_HOTELS[0]]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()]


def test_full_width_ascii_becomes_ascii_and_chinese_punctuation_stays(tmp_path):
    text = "ＡＢＣ１２３　手机很好，但是电池只用了５０％？！（型号：ＸＹ－９）ｶﾀｶﾅ……x²"
    src = write_rows(tmp_path / "in.jsonl", [{"text": text, "label": "ｐｏｓ"}, {"text": "太差了。", "label": "neg"}])
    manifest = prepare([src], task="classification", out=tmp_path / "out", split="1,0", pii="off")
    assert rows_of(tmp_path / "out") == [
        {"text": "ABC123 手机很好，但是电池只用了50%？！（型号：XY-9）カタカナ……x²", "label": "pos"},
        {"text": "太差了。", "label": "neg"},
    ]
    assert "，！？：；（）～" in manifest["options"]["normalization"]


def test_t2s_converts_traditional_to_simplified_and_the_manifest_says_so(tmp_path):
    rows = [
        {"text": "繁體中文的軟體很好用，頭髮乾燥的問題也解決了。", "label": "正面評價"},
        {"text": "這個產品太差了", "label": "負面評價"},
    ]
    src = write_rows(tmp_path / "in.jsonl", rows)
    converted = prepare([src], task="classification", out=tmp_path / "t2s", split="1,0", pii="off", t2s=True)
    assert rows_of(tmp_path / "t2s") == [
        {"text": "繁体中文的软体很好用，头发干燥的问题也解决了。", "label": "正面評價"},  # labels: as given
        {"text": "这个产品太差了", "label": "負面評價"},
    ]
    assert converted["options"]["t2s"] is True
    kept_as_is = prepare([src], task="classification", out=tmp_path / "as_is", split="1,0", pii="off")
    assert rows_of(tmp_path / "as_is") == rows
    assert kept_as_is["options"]["t2s"] is False


def test_t2s_converts_ner_tokens_one_by_one_so_tags_stay_aligned(tmp_path):
    conll = tmp_path / "in.conll"
    conll.write_text("我 O\n住 O\n在 O\n臺 B-LOC\n灣 I-LOC\n\n", encoding="utf-8")
    prepare([conll], task="ner", out=tmp_path / "out", split="1,0", pii="off", t2s=True)
    assert rows_of(tmp_path / "out") == [
        {"tokens": ["我", "住", "在", "台", "湾"], "tags": ["O", "O", "O", "B-LOC", "I-LOC"]}
    ]


def test_t2s_cli_flag_and_its_one_line_error_without_opencc(cli, tmp_path, monkeypatch):
    src = write_rows(tmp_path / "in.jsonl", [{"text": "這個軟體很好用"}])
    args = ("data", "prepare", str(src), "--task", "text", "--pii", "off", "--split", "1,0", "--t2s")
    result = cli(*args, "--out", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    assert result.json()["options"]["t2s"] is True
    assert rows_of(tmp_path / "out") == [{"text": "这个软体很好用"}]
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "opencc.py").write_text("raise ImportError('opencc is not installed')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(blocked), os.environ.get("PYTHONPATH")])))
    missing = cli(*args, "--out", str(tmp_path / "missing"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "error: --t2s needs the opencc package (pip install 'leptonkit[train]' (or: pip install opencc))"
    ]
