"""Chinese text through ``prepare``: near-duplicates found on character shingles, full-width forms normalised,
Traditional-to-Simplified conversion on request."""

from __future__ import annotations

import json
from pathlib import Path

from leptonkit.data import prepare
from leptonkit.data.dedup import SHINGLE_CHARS, Deduplicator, shingle

HOTEL = "酒店位置很好，离地铁站只有五分钟，房间干净整洁，前台服务热情，早餐种类也很丰富，隔音效果差了一点，下次出差还会再住。"
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
