"""Names, places and Chinese street addresses found with no setup: word lists (Faker's, the tz database's) and
context rules, in English and Chinese; what they miss is pinned too. Every example is made here."""

from __future__ import annotations

import pytest

from leptonkit.privacy.pii import PiiDetector, Pseudonymizer
from tests.privacy.test_pii import WordListModel


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector(None)


def found(detector: PiiDetector, text: str, types: tuple[str, ...] = ("PERSON", "LOCATION", "ADDRESS")) -> list:
    return [(s.type, s.value) for s in detector.detect(text) if s.type in types]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I am Margaret Thatcherton", [("PERSON", "Margaret Thatcherton")]),
        ("Hi, I'm Odile Brennigan and my parcel is lost", [("PERSON", "Odile Brennigan")]),  # the cue contracted
        ("Thanks! I’m Tobias.", [("PERSON", "Tobias")]),
        ("John Smith lives in Paris", [("PERSON", "John Smith"), ("LOCATION", "Paris")]),
        ("Dear Ms. Okonkwo-Baptiste, your order shipped.", [("PERSON", "Okonkwo-Baptiste")]),
        ("my name is Ingrid Solvang and I moved to New York", [("PERSON", "Ingrid Solvang"), ("LOCATION", "New York")]),
        (
            "Please ask Kevin about Faina D. Yefremova's account.",
            [("PERSON", "Kevin"), ("PERSON", "Faina D. Yefremova")],
        ),
        ("The refund is late, Brennigan said.", [("PERSON", "Brennigan")]),  # a cue after: said
        # what the rules do not find: a surname alone, a name that is also a word, a month, lower case
        ("Thatcherton called twice about the refund.", []),
        ("Grant the request by May 5 and Mark it done.", []),
        ("please forward this to margaret thatcherton", []),
    ],
)
def test_english_names_and_places_without_a_model(detector, text, expected):
    assert found(detector, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("您好，我叫王秀英，想咨询贷款", [("PERSON", "王秀英")]),
        ("请联系张伟先生处理售后", [("PERSON", "张伟")]),
        ("感谢丁建同学的帮助", [("PERSON", "丁建")]),  # 谢 is a surname too: not 谢丁建
        ("客户欧阳娜娜今天来电", [("PERSON", "欧阳娜娜")]),
        ("李娜的手机号是13912345678", [("PERSON", "李娜")]),
        ("业主高燕，联系方式+86 191 8747 9828", [("PERSON", "高燕")]),  # not 方式, read before +86
        ("他下周去上海出差，然后回广东省深圳市南山区", [("LOCATION", "上海"), ("LOCATION", "广东省深圳市南山区")]),
        ("我们在佛山和武汉市都有分公司", [("LOCATION", "佛山"), ("LOCATION", "武汉市")]),
        ("寄到广东省深圳市南山区科技路88号3栋502室谢谢", [("ADDRESS", "广东省深圳市南山区科技路88号3栋502室")]),
        ("我家住在朝阳路5号", [("ADDRESS", "朝阳路5号")]),
        # no cue, no name found; a district name alone (秀英 is also a given name) is no place
        ("昨天刘红在会上提出了新的方案", []),
        ("秀英今天没来", []),
        ("去超市买了点菜，城市很热闹", []),
    ],
)
def test_chinese_names_places_and_addresses(detector, text, expected):
    assert found(detector, text) == expected


def test_a_model_replaces_the_latin_rules_but_not_the_chinese_ones():
    model = WordListModel({"Thatcherton": "PER"})
    detector = PiiDetector(model)
    text = "I am Margaret Thatcherton\n请联系张伟先生"
    assert found(detector, text) == [("PERSON", "Thatcherton"), ("PERSON", "张伟")]
    assert found(PiiDetector(None, rules=False), text) == []
    assert PiiDetector(None).names_detected and not PiiDetector(None, rules=False).names_detected


def test_pseudonyms_of_chinese_values_are_chinese():
    fakes = Pseudonymizer("k")
    name, phone = fakes.fake("PERSON", "王秀英"), fakes.fake("PHONE", "13812345678")
    assert name != "王秀英" and 2 <= len(name) <= 4 and all("\u4e00" <= c <= "\u9fff" for c in name)
    assert phone.isdigit() and len(phone) == 11 and phone[0] == "1"
    assert fakes.fake("ADDRESS", "科技路88号").endswith("号")
    assert fakes.fake("PERSON", "John Smith").isascii()


def test_redact_cli_finds_names_and_places_with_no_setup(cli):
    text = "I am Margaret Thatcherton\nJohn Smith lives in Paris\n请联系张伟先生，电话13812345678\n"
    result = cli("data", "redact", input=text)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "I am [PERSON]\n[PERSON] lives in [LOCATION]\n请联系[PERSON]先生，电话[PHONE]\n"
    assert "word lists and context rules only" in result.stderr  # and pii-setup is named as the stronger path
    assert "pii-setup" in result.stderr
