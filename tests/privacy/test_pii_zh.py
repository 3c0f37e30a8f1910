"""Chinese PII: mainland mobile and landline numbers, resident ID numbers (check digit, date of birth), UnionPay
cards, and emails, IPs and URLs inside Chinese text with no spaces around them. Every example is made here."""

from __future__ import annotations

import pytest

from leptonkit.privacy.pii import PiiDetector, Pseudonymizer
from leptonkit.privacy.recognizers import cn_id_check_digit, cn_id_ok, luhn_ok


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector(None, rules=False)  # the patterns; names and places: tests/privacy/test_names.py


def make_id(area: str, born: str, seq: str) -> str:
    """An 18-digit resident ID number with its ISO 7064 MOD 11-2 check digit computed here."""
    first17 = area + born + seq
    return first17 + cn_id_check_digit(first17)


def luhn_complete(prefix: str) -> str:
    """``prefix`` plus the digit that makes it Luhn-valid."""
    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


def found(detector: PiiDetector, text: str) -> list[tuple[str, str]]:
    return [(s.type, s.value) for s in detector.detect(text)]


def test_check_digit_follows_iso_7064():
    # worked by hand: sum(d*w) for 11010519491231002 is 167; 167 % 11 = 2 -> "X"
    assert cn_id_check_digit("11010519491231002") == "X"
    assert cn_id_ok("11010519491231002X") and cn_id_ok("11010519491231002x")
    assert not cn_id_ok("110105194912310021")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的手机号是13812345678，谢谢", [("PHONE", "13812345678")]),
        ("电话+86 139 0000 1111或0086-15012345678", [("PHONE", "+86 139 0000 1111"), ("PHONE", "0086-15012345678")]),
        ("请拨打186-2345-6789联系", [("PHONE", "186-2345-6789")]),
        ("办公室010-12345678，深圳0755 1234 5678", [("PHONE", "010-12345678"), ("PHONE", "0755 1234 5678")]),
        ("总机(021)62345678转123", [("PHONE", "(021)62345678转123")]),
        ("请联系zhang.wei@example.com谢谢", [("EMAIL", "zhang.wei@example.com")]),
        ("服务器10.1.2.3出错了", [("IP", "10.1.2.3")]),
        ("详见https://example.cn/a?b=1页面", [("URL", "https://example.cn/a?b=1")]),
        ("官网www.example.com。", [("URL", "www.example.com")]),
    ],
)
def test_chinese_patterns_have_exact_spans(detector, text, expected):
    assert found(detector, text) == expected


def test_resident_ids_are_found_only_with_a_valid_check_digit_and_birth_date(detector):
    for area, born, seq in [("110101", "19900307", "451"), ("440305", "20011231", "007"), ("510107", "19650229", "1")]:
        if born == "19650229":  # 1965 is no leap year: a well-formed number with an impossible birthday
            number = make_id(area, born, "123")
            assert found(detector, f"身份证号{number}。") == []
            continue
        number = make_id(area, born, seq)
        assert found(detector, f"身份证号{number}。") == [("CN_ID_CARD", number)]
        spaced = f"{number[:6]} {number[6:14]} {number[14:]}"
        assert found(detector, f"证件:{spaced}") == [("CN_ID_CARD", spaced)]
        for wrong in "0123456789X":
            if wrong != number[-1]:
                bad = number[:17] + wrong
                # a mistyped check digit is no ID number, and no card number either (even when its Luhn sum passes)
                assert found(detector, f"身份证号{bad}。") == [], bad
    future = make_id("110101", "20990101", "123")
    assert found(detector, f"身份证{future}") == []
    assert found(detector, f"身份证{make_id('990101', '19900307', '451')}") == []  # 99: no province
    assert found(detector, "旧身份证110101900307451，") == [("CN_ID_CARD", "110101900307451")]
    assert found(detector, "旧身份证110101901307451，") == []  # month 13


def test_numbers_that_are_not_phones_stay(detector):
    for text in [
        "编号12345678901",
        "订单10086123456已发货",
        "价格1000到2000元",
        "2019年3月5日",
        "流水20231105123456789012",
    ]:
        assert found(detector, text) == [], text
    assert found(detector, "号码1381234567") == []  # ten digits
    assert found(detector, "号码138123456789") == []  # twelve digits


def test_unionpay_cards_need_luhn_or_a_card_word(detector):
    card = luhn_complete("622202123456789012")  # 19 digits
    assert luhn_ok(card)
    assert found(detector, f"转账到{card}即可") == [("CREDIT_CARD", card)]
    grouped = " ".join(card[i : i + 4] for i in range(0, 19, 4))
    assert found(detector, f"转账到{grouped}即可") == [("CREDIT_CARD", grouped)]
    not_luhn = card[:-1] + str((int(card[-1]) + 1) % 10)
    assert found(detector, f"转账到{not_luhn}即可") == []
    assert found(detector, f"银行卡号：{not_luhn}") == [("CREDIT_CARD", not_luhn)]


def test_redaction_and_pseudonyms_of_chinese_text(detector):
    number = make_id("110101", "19900307", "451")
    text = f"我的手机号是13812345678，身份证号{number}，邮箱li.na@example.org"
    assert detector.redact(text) == "我的手机号是[PHONE]，身份证号[CN_ID_CARD]，邮箱[EMAIL]"
    fake = Pseudonymizer(b"k").fake("CN_ID_CARD", number)
    assert fake != number and cn_id_ok(fake)
    assert fake == Pseudonymizer(b"k").fake("CN_ID_CARD", number)


def test_english_text_is_unchanged_by_the_chinese_patterns(detector):
    text = "Call 138 1234 5678? No: order 12345678901 ships 2024-05-01 to bob@x.io from 10.0.0.1"
    spans = found(detector, text)
    assert ("EMAIL", "bob@x.io") in spans and ("IP", "10.0.0.1") in spans
    assert not any(t == "CN_ID_CARD" for t, _ in spans)
