"""Pattern recognizers for structured PII, each a regex plus a validator (checksums where the format has one).

Presidio's recognizers were the model for these, but ``presidio_analyzer`` imports spaCy at import time and
spaCy's English models are not on PyPI, so the patterns live here: compiled once, pure ``re`` + stdlib, a few
microseconds per short string. A recognizer's ``score`` settles overlaps: a checksum-validated card (1.0) wins over
a phone-shaped digit run (0.5) on the same characters.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

PII_TYPES = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "IP",
    "URL",
    "US_SSN",
    "CN_ID_CARD",
    "DATE",
    "PERSON",
    "LOCATION",
    "ORGANIZATION",
    "ADDRESS",
)


@dataclass(frozen=True)
class Recognizer:
    """One PII type's pattern: group ``pii`` (or the whole match) is the span; ``validate`` may reject a match."""

    type: str
    pattern: re.Pattern[str]
    score: float
    validate: Callable[[str], bool] | None = None

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        for match in self.pattern.finditer(text):
            group = "pii" if "pii" in self.pattern.groupindex else 0
            start, end = match.span(group)
            if start < end and (self.validate is None or self.validate(text[start:end])):
                yield start, end


def luhn_ok(value: str) -> bool:
    """The Luhn checksum of a card number (separators ignored), with a length of 12 (Maestro) to 19 digits."""
    digits = [int(c) for c in value if c.isdigit()]
    if not 12 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_ok(value: str) -> bool:
    """Luhn-valid, and grouped like a card when grouped at all (4-4-4-4[-3] or Amex 4-6-5), not like a phone."""
    groups = [len(g) for g in re.split(r"[ -]", value)]
    if len(groups) > 1 and not (groups == [4, 6, 5] or (groups[:-1] == [4] * (len(groups) - 1) and groups[-1] <= 4)):
        return False
    return luhn_ok(value) and not cn_id_shaped(value)


def iban_ok(value: str) -> bool:
    """ISO 13616 mod-97 check: move the first four characters to the end, letters to numbers, remainder 1."""
    compact = value.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def ip_ok(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def ssn_ok(value: str) -> bool:
    """SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000; not all one digit."""
    digits = re.sub(r"\D", "", value)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return (
        len(digits) == 9
        and area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
        and len(set(digits)) > 1
    )


def phone_ok(value: str) -> bool:
    """7-15 digits (E.164's maximum), and not shaped like a date (``2019-11-03``) or a decimal number."""
    number = re.split(r"\s*(?:x|ext\.?)\s*\d+$", value)[0]
    digits = sum(c.isdigit() for c in number)
    if not 7 <= digits <= 15:
        return False
    return not re.fullmatch(r"\d{4}-\d{2}-\d{2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|\d+\.\d+", number)


# Chinese (mainland) numbers. In Chinese text no space or word boundary separates a number from the words around
# it, and ``\w`` matches Chinese characters, so these patterns bound a match by digits and ASCII letters only.
_NOT_BEFORE = r"(?<![0-9A-Za-z_+.-])"
_NOT_AFTER = r"(?![0-9A-Za-z_]|[.-]\d)"
_CN_COUNTRY = r"(?:(?:\+|00)86[ -]?)"
# Province codes: the first two digits of a resident ID number (GB/T 2260), Taiwan, Hong Kong and Macau included.
_CN_PROVINCES = frozenset(
    {*map(str, range(11, 16)), *map(str, range(21, 24)), *map(str, range(31, 38)), *map(str, range(41, 47))}
    | {*map(str, range(50, 55)), *map(str, range(61, 66)), "71", "81", "82"}
)
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


def cn_id_check_digit(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of an 18-digit resident ID number, from its first 17 digits."""
    return _CN_ID_CHECK[sum(int(d) * w for d, w in zip(first17, _CN_ID_WEIGHTS, strict=True)) % 11]


def _birth_date_ok(year: int, month: int, day: int) -> bool:
    try:
        born = datetime.date(year, month, day)
    except ValueError:
        return False
    return datetime.date(1880, 1, 1) <= born <= datetime.date.today()


def cn_id_shaped(value: str) -> bool:
    """18 digits with a province code and a date of birth where a resident ID number has them (any check digit):
    such a number is an ID number or a mistyped one, not a card number, even when its Luhn sum happens to pass."""
    compact = value.replace(" ", "").replace("-", "").upper()
    return (
        len(compact) == 18
        and compact[:17].isdigit()
        and compact[:2] in _CN_PROVINCES
        and _birth_date_ok(int(compact[6:10]), int(compact[10:12]), int(compact[12:14]))
    )


def cn_id_ok(value: str) -> bool:
    """A resident ID number: 18 characters with a valid province, date of birth and MOD 11-2 check digit, or the
    15-digit legacy form (no check digit; ``YYMMDD`` of the 1900s) with a valid province and date."""
    compact = value.replace(" ", "").upper()
    if compact[:2] not in _CN_PROVINCES:
        return False
    if len(compact) == 18 and compact[:17].isdigit():
        born = _birth_date_ok(int(compact[6:10]), int(compact[10:12]), int(compact[12:14]))
        return born and cn_id_check_digit(compact[:17]) == compact[17]
    if len(compact) == 15 and compact.isdigit():
        return _birth_date_ok(1900 + int(compact[6:8]), int(compact[8:10]), int(compact[10:12]))
    return False


def cn_mobile_ok(value: str) -> bool:
    """A mainland mobile number: 11 digits ``1[3-9]X XXXX XXXX`` after an optional +86/0086."""
    digits = re.sub(r"\D", "", value)
    digits = digits[4:] if value.startswith("00") else digits[2:] if value.startswith("+") else digits
    return len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789"


def cn_landline_ok(value: str) -> bool:
    """An area code (010, 02X or a 3-digit code after 0) and a 7- or 8-digit local number not starting 0, and an
    optional extension (``-123``, ``转123``)."""
    if _cn_landline_digits_ok(value):
        return True
    number = re.sub(r"(?:-|转)\d{1,5}$", "", value)
    return number != value and _cn_landline_digits_ok(number)


def _cn_landline_digits_ok(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    if value.startswith(("+", "00")):
        digits = digits[4:] if value.startswith("00") else digits[2:]
        digits = digits if digits.startswith("0") else "0" + digits
    area = 3 if digits[:3] == "010" or digits[:2] == "02" else 4
    return 10 <= len(digits) <= 12 and 7 <= len(digits) - area <= 8 and digits[area] != "0"


def cn_card_ok(value: str) -> bool:
    """A UnionPay card number: 16-19 digits starting 62, Luhn-valid, and not a resident ID number."""
    digits = re.sub(r"[ -]", "", value)
    return 16 <= len(digits) <= 19 and digits.startswith("62") and luhn_ok(digits) and not cn_id_ok(digits)


_CN_AREA = r"(?:10|2\d|[3-9]\d{2})"
_CN_CARD_WORDS = r"(?:卡号|银行卡|银联卡|储蓄卡|信用卡|借记卡|账号|帐号)"

CN_RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer(
        "PHONE",
        re.compile(rf"{_NOT_BEFORE}{_CN_COUNTRY}?1[3-9]\d(?:[ -]?\d{{4}}){{2}}{_NOT_AFTER}"),
        0.9,
        cn_mobile_ok,
    ),
    Recognizer(
        "PHONE",
        re.compile(
            rf"(?<![0-9A-Za-z_+.-])(?:\(?(?:{_CN_COUNTRY}0?|0){_CN_AREA}\)?)[ -]?[1-9]\d{{2,3}}[ -]?\d{{4}}"
            rf"(?:[-转]\d{{1,5}})?{_NOT_AFTER}"
        ),
        0.85,
        cn_landline_ok,
    ),
    Recognizer(
        "CN_ID_CARD",
        re.compile(rf"{_NOT_BEFORE}(?:\d{{6}} ?\d{{8}} ?\d{{3}}[\dXx]|\d{{15}}){_NOT_AFTER}"),
        1.0,
        cn_id_ok,
    ),
    Recognizer(
        "CREDIT_CARD",
        re.compile(rf"{_NOT_BEFORE}62\d{{2}}(?:[ -]?\d{{4}}){{2}}[ -]?\d{{4,7}}{_NOT_AFTER}"),
        1.0,
        cn_card_ok,
    ),
    # A 62 card number right after a card word: counted without Luhn (some older UnionPay numbers fail it).
    Recognizer(
        "CREDIT_CARD",
        re.compile(rf"{_CN_CARD_WORDS}[:：\s是为]{{0,3}}(?P<pii>62\d{{14,17}}){_NOT_AFTER}"),
        0.95,
        lambda v: not cn_id_ok(v),
    ),
)

# Types whose patterns also run with CJK characters read as separators (an email or address inside Chinese text).
CJK_SEPARATED_TYPES = frozenset({"EMAIL", "URL", "IP", "CREDIT_CARD", "IBAN"})
_CJK = re.compile(
    "[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
    "\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f]"
)


def cjk_as_separators(text: str) -> str | None:
    """``text`` with every CJK character (and full-width form) replaced by a line break, offsets unchanged;
    ``None`` when it has none."""
    return _CJK.sub("\n", text) if _CJK.search(text) else None


_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_WEEKDAY = r"(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day"
_TIME = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2})?(?:\s?[AaPp][Mm])?)?"


def _street_words() -> str:
    """Street types: Faker's en_US list (Alley ... Wells) plus the usual abbreviations, longest first."""
    from faker.providers.address.en_US import Provider

    abbreviations = ("St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct", "Pl", "Ter", "Cir", "Pkwy", "Hwy", "Sq", "Trl", "str")
    words = {*Provider.street_suffixes, *abbreviations, "Boulevard", "Close", "Vale", "Avenues", "Strasse", "Straße"}
    return "(?:" + "|".join(sorted(words, key=len, reverse=True)) + ")"


_STREET = _street_words()
_UNIT = r"(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|Room|Rm|(?:P\.?\s?O\.?\s+)?Box|PSC)\.?\s*#?\d+[A-Za-z]?"
# Street forms of other languages: a leading street word (Via Solferino 3), a compound ending in a street word
# (Hämeenkatu 9, Vesterbrogade 41), or a trailing one (Petőfi u. 8.), each with an optional house number first.
_STREET_FIRST = (
    r"(?:Via|Viale|Corso|Piazza|Largo|Rua|Rue|Calle|Avenida|Av\.|Praça|Travessa|Strada|Ulica|ul\.|Carrer|Paseo)"
)
_STREET_COMPOUND = (
    r"[^\W\d_][\w'-]*(?:katu|tie|kuja|polku|gade|vej|stræde|gatan|vägen|gata|veien|vegen|straße|strasse|weg|laan|"
    r"straat|gasse|allee|platz|utca)"
)
_STREET_LAST = r"(?:u\.|utca|tér|út|körút)"
_HOUSE = r"\d{1,5}[A-Za-z]?\.?(?!\w)"

RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer(
        "EMAIL",
        re.compile(r"(?<![\w.+-])[\w.%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])"),
        1.0,
    ),
    Recognizer(
        "URL",
        re.compile(r"(?<![\w@])(?P<pii>(?:https?://|www\.)[^\s<>\"'()\[\]]+?)(?=[.,;:!?)\]]*(?:\s|$|[<>\"']))", re.I),
        0.9,
    ),
    # A bare domain name ("docs on kivi-group.info"): labels and a common top-level domain; words such as "in",
    # "it", "is" or "no", which are top-level domains too, are left out of the list, so "see config.in" is no domain.
    Recognizer(
        "URL",
        re.compile(
            r"(?<![\w@.-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
            r"(?:com|org|net|info|biz|io|co|edu|gov|dev|app|ai|us|uk|de|fr|es|nl|eu|ca|au|ch|se|dk|fi|pl|jp|br)"
            r"(?![\w-]|\.\w)"
        ),
        0.6,
    ),
    Recognizer("CREDIT_CARD", re.compile(r"(?<![\w+-])\d(?:[ -]?\d){11,18}(?![\w-])"), 1.0, card_ok),
    Recognizer(
        "IBAN",
        re.compile(
            r"(?<!\w)(?:(?i:[a-z]{2}\d{2}[a-z0-9]{11,30})|[A-Z]{2}\d{2}(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)(?!\w)"
        ),
        1.0,
        iban_ok,
    ),
    Recognizer("IP", re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)"), 0.95, ip_ok),
    Recognizer(
        "IP",
        re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})(?![\w:])"),
        0.95,
        ip_ok,
    ),
    Recognizer("US_SSN", re.compile(r"(?<![\w-])\d{3}([- ])\d{2}\1\d{4}(?![\w-])"), 0.85, ssn_ok),
    Recognizer(
        "PHONE",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(0\) ?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,10}(?:[ .-]\d{1,7}){0,5}"
            r"(?: ?(?:x|ext\.?) ?\d{1,5})?(?!\w|-\d)",
            re.I,
        ),
        0.5,
        phone_ok,
    ),
    Recognizer(
        "DATE",
        re.compile(
            rf"(?<![\w/.-])(?:\d{{4}}-\d{{1,2}}-\d{{1,2}}{_TIME}|\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}}){_TIME}"
            rf"|\d{{1,2}}(?:st|nd|rd|th)?(?:\s+of)?\s+{_MONTH},?\s+\d{{4}}|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
            rf"|{_MONTH}\s+\d{{4}}|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?)(?![\w/-]|\.\d)"
        ),
        0.7,
    ),
    Recognizer("DATE", re.compile(rf"\b{_WEEKDAY}\b", re.I), 0.6),
    Recognizer("DATE", re.compile(r"(?<![\w$€£.,-])(?:19|20)\d{2}(?![\w%.,-]\d|\w)"), 0.4),
    Recognizer(
        "ADDRESS",
        re.compile(
            rf"(?<!\w)\d{{1,6}}[A-Za-z]?(?:\s+\d{{1,5}})?\s+(?:[A-Z][\w'.-]*\s+){{1,4}}{_STREET}\.?(?!\w)"
            rf"(?:,?\s+{_UNIT})*"
        ),
        0.8,
    ),
    Recognizer("ADDRESS", re.compile(rf"(?<!\w){_UNIT}(?:,?\s+{_UNIT})*(?!\w)"), 0.8),
    # US military post: "PSC 2291, Box 310\nAPO AE 09512"
    Recognizer("ADDRESS", re.compile(r"(?<!\w)(?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+\d{5}(?:-\d{4})?(?!\w)"), 0.8),
    Recognizer(
        "ADDRESS",
        re.compile(rf"(?<!\w)[A-ZÀ-Þ][\w'-]*(?:\s+[A-ZÀ-Þ][\w'-]*){{0,2}}\s+{_STREET}\.?\s+\d{{1,5}}[A-Za-z]?(?!\w)"),
        0.7,
    ),
    Recognizer(
        "ADDRESS",
        re.compile(
            rf"(?<!\w)(?:\d{{1,6}}\s+)?(?:{_STREET_FIRST}(?:\s+[^\W\d_][\w'.-]*){{1,4}}?\s+{_HOUSE}"
            rf"|\d{{1,5}}\s+{_STREET_FIRST}(?:\s+[A-Z][\w'-]*){{1,4}}"
            rf"|(?i:{_STREET_COMPOUND})\s+{_HOUSE}"
            rf"|[^\W\d_][\w'-]*(?:\s+[^\W\d_][\w'-]*)?\s+{_STREET_LAST}\s+{_HOUSE})(?:,?\s+{_UNIT})*"
        ),
        0.76,
    ),
    Recognizer("ADDRESS", re.compile(r"(?<![\w$€£.,-])\d{5}(?:-\d{4})?(?![\w%]|[.,]\d)"), 0.35),
)
