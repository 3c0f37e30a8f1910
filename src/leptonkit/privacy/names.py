"""Person names, places and Chinese street addresses without a model: word lists and context rules.

What the detector finds with no setup (``leptonkit data pii-setup`` builds the stronger NER model):

- English (Latin-script) names: first names from Faker's person providers of 26 European locales (about 11,600),
  last names likewise. A name is a run of capitalised words that starts with a known first name and has a second
  capitalised word (``John Smith``), a run after a title (``Ms. Margarot``) or after a cue (``I am``, ``my name
  is``, ``Dear``), or a run before a cue (``... lives in``, ``... said``). A known first name alone is a name
  unless it is also a common English word (``May``, ``Will``, ``Grant``). A surname alone, with no cue, is missed.
- Places: IANA time-zone city names (``zoneinfo``: Paris, New York, Shanghai; about 450) and a capitalised run
  after ``lives in``, ``moved to``, ``born in`` ... (country and US state names are in the pattern detector).
- Chinese names: a surname (Faker ``zh_CN``'s 399, ``欧阳`` and other compound surnames) and one or two given-name
  characters, only with a cue before (``我叫``, ``联系人：``) or after (``先生``, ``女士``, ``老师``, ``的手机``).
  Faker's given names are not used, so names in the evaluation set (which come from them) are not looked up.
  A name with no cue (``昨天王伟去了北京``) is missed.
- Chinese places: provinces, cities and districts (Faker ``zh_CN``'s lists) and the administrative units that follow
  them (``深圳市南山区``); a district name alone (``秀英``, also a given name) needs its ``区``/``县``.
- Chinese street addresses: ``...路/街/大道/巷/弄/胡同`` + a number + ``号``, the places before it and the
  building, unit and room after it (``广东省深圳市南山区科技路88号3栋502室``).

Faker is MIT-licensed; its lists are read at first use, not copied here. ``zoneinfo`` reads the IANA tz database
(public domain).
"""

from __future__ import annotations

import importlib
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Faker person providers read for Latin-script first and last names.
NAME_LOCALES = sorted(
    _words(
        "en_US en_GB en_IE de_DE fr_FR es_ES it_IT nl_NL pt_BR pt_PT sv_SE da_DK no_NO fi_FI is_IS pl_PL cs_CZ sk_SK "
        "sl_SI hr_HR hu_HU et_EE lt_LT lv_LV ro_RO tr_TR"
    )
)
# First names that are common English words: a name only with a last name, a title or a cue.
AMBIGUOUS_FIRST_NAMES = _words(
    """April August Bill Chase Dale Dean Don Faith Frank Glen Grace Grant Guy Hunter Jack Joy June Lee Mark May Rose
    Summer Will Hope Art Page Miles Lane Wade Sky Rich Pat Sunny Else Floor Gun Job Line Lot My Per Us Von Del Ver Sol
    Tan Odd Ion Uno Una Van Bo Li Lo Jo Ey Ib Ás Ír Ýr Úa Bas Cal Cas Che Dag Dom Fem Gal Gil Jan Jet Kim Mar Max Nas
    Ola Ora Ray Rik Rut Sam Sem Sep Sil Sue Tea Ted Tim Tom Tor Toy Ulu Uni Urs Yan Ana Ida Ira Ivy Eve Ben Joe Dan
    Ken Ron Roy Jay Kay Lea Leo Eli Bob Meg Pam Liz Zoe Mia Pia Ada Amy Ann Eva Ian Kai Mark Carol Christian Crystal
    Dawn Destiny Ginger Harmony Heather Holly Iris Ivory Jade Jewel Lily Misty Pearl Ruby Star Violet Autumn Angel
    Amber Baby Beau Berry Birch Blue Bradley Brandy Candy Cherry Clay Cliff Colt Daisy Dusty Early Easter Fern Forest
    Fox Free General German Honey Lake London Love Major Mason Melody Merry Noble Ocean Paris Parker Patience Penny
    Porter Prince Queen Rain Reed River Robin Rock Royal Sage Salem Scout Shannon Sierra Silver Spencer Stone Storm
    Tanner Taylor Temple Tucker Tyler Victory Walker Warren Winter Wolf Young Sir Madison Jordan Israel Georgia
    Victoria Florence Austin Sydney Chelsea Dallas Houston Phoenix Brooklyn Aurora Asia India Africa America Kenya
    Rome Berlin Holland Ireland China Austria Hungary Norway Sweden Poland Turkey Dakota Cameron Kent Orlando Regina
    Marengo Monticello Stanley Darwin Dawson Hobart Halifax Johnston Louisville Resolute Wallis Wake Louis Santiago
    Vincent Thomas Helena Lucia Kitts Barthelemy Juan"""
)
# Words that start a capitalised run without being part of a name ("Dear John Smith", "Hi Anna").
_LEADING = re.compile(
    r"(?:Dear|Hi|Hello|Hey|Thanks|Thank|The|A|An|In|On|At|By|For|From|To|With|And|But|Or|So|If|When|Mr|Mrs|Ms|Miss|"
    r"Dr|Prof|Sir|Madam|Mx|Mister|Doctor|Professor|Captain|Sgt|Rev|Father|Sister|Brother|Uncle|Aunt|Saint|St|Yours|"
    r"Regards|Sincerely|Best|Cheers|Ask|Call|Tell|Email|Contact|Please|Is|Was|Did|Does|Do|Has|Have|I|I['’]m|My|Your|"
    r"Our|His|Her|Their|This|That|These|Those|Name|Signed|Per|Via|Today|Yesterday|Tomorrow|Monday|Tuesday|Wednesday|"
    r"Thursday|Friday|Saturday|Sunday|January|February|March|April|May|June|July|August|September|October|November|"
    r"December|Street|Road|Avenue)\.?"
)
_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Mister|Doctor|Professor|Dame|Lady|Lord)\.?"
_NAME_CUE_BEFORE = re.compile(
    rf"(?:\b(?:[Mm]y name is|[Nn]ame is|[Nn]ame:|I am|I'm|I’m|[Cc]all me|[Cc]alled|[Nn]amed|[Dd]ear|[Hh]i|[Hh]ello|"
    rf"[Hh]ey|"
    rf"[Ss]igned|[Ss]incerely,|[Rr]egards,|[Tt]hanks,|[Cc]ontact|[Aa]sk(?: for)?|[Ss]poke (?:to|with)|under|by|"
    rf"[Uu]nder the name(?: of)?|account holder|[Pp]atient|[Cc]ustomer|[Cc]lient)|{_TITLE})\s+$"
)
_WEAK_CUES = ("by", "under", "ask", "Ask")  # a cue only before a two-word run
_NAME_CUE_AFTER = re.compile(
    r"^(?:'s\b|’s\b|,\s+(?:\d{1,3},|aged|who|our|my|the)\b|\s+(?:lives|lived|living|said|says|wrote|writes|told|"
    r"tells|asked|asks|called|emailed|works|worked|was born|is (?:a|an|my|our|the)|has (?:a|an|been)|had|will|"
    r"would|can|could|thinks|thought|wants|wanted|went|came|moved|paid|sent|signed|replied|answered|joined|left|"
    r"began|spent|listed|starred|played|directed|published|studied|graduated|and (?:I|her|his))\b|"
    r",\s+(?:can|could|would|will|please|do|did|are|is|have)\b)"
)
_PLACE_CUE = re.compile(
    r"\b(?:lives|lived|living|live|moved|moving|born|based|located|resides|resided|relocated|flew|travel(?:l)?ed|"
    r"grew up|stationed|headquartered|travell?ing|returned|coming|going|went|back|flying|trip|visit(?:ing|ed)?)"
    r"\s+(?:in|to|at|from)?\s*$"
)
# A capitalised word (any script with case), a particle inside a name, an initial.
_WORD = r"[^\W\d_][^\W\d_'’-]*(?:['’-][^\W\d_]+)*"
_RUN = re.compile(rf"(?<![\w@.])(?:[^\W\d_]\.|{_WORD})(?:[ \t]+(?:[^\W\d_]\.|{_WORD}))*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:\n\"“>]\s*)$")
_POSSESSIVE = re.compile(r"['’]s$")
_CAPITALISED = re.compile(r"[A-ZÀ-ÖØ-ÞĀ-Ž]")


@cache
def latin_names() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, last names) from Faker's person providers of ``NAME_LOCALES``."""
    first: set[str] = set()
    last: set[str] = set()
    for locale in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attr, into in (
            ("first_names", first),
            ("first_names_male", first),
            ("first_names_female", first),
            ("last_names", last),
            ("last_names_male", last),
            ("last_names_female", last),
        ):
            into.update(n for n in getattr(provider, attr, ()) or () if re.fullmatch(_WORD, n))
    return frozenset(first), frozenset(last)


@cache
def _city_pattern() -> re.Pattern[str]:
    """City names of the IANA tz database (``Europe/Paris`` -> Paris), longest first, case-sensitive."""
    areas = ("Africa", "America", "Asia", "Atlantic", "Australia", "Europe", "Pacific", "Indian")
    cities = {
        zone.split("/")[-1].replace("_", " ") for zone in zoneinfo.available_timezones() if zone.split("/")[0] in areas
    }
    cities = {c for c in cities if len(c) > 3 and not c.isupper() and c not in _NOT_CITIES}
    alternatives = "|".join(re.escape(c) for c in sorted(cities, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")


# tz names that are words, regions or people rather than cities in running text.
_NOT_CITIES = _words(
    "Center North South West East Easter Christmas Wake Midway Resolute Regina Victoria Stanley Darwin Dawson "
    "Johnston Marengo Monticello Vevay Winamac Knox Virgin Currie Creston Beulah Canary Cocos Chatham Casey Davis "
    "Troll Palmer Mawson Vostok Macquarie Comoro Reunion Jersey Oral Samara Salta Tell City Norfolk Louisville "
    "Cayman Faroe Faeroe Chagos Azores Madeira Bermuda Guernsey"
)


@dataclass(frozen=True)
class Found:
    start: int
    end: int
    type: str
    score: float


def _runs(text: str) -> Iterator[tuple[int, int, list[tuple[int, int]]]]:
    """Runs of capitalised words (particles and initials inside), as (start, end, word offsets)."""
    for match in _RUN.finditer(text):
        words = [(m.start(), m.end(), m.group()) for m in re.finditer(rf"[^\W\d_]\.|{_WORD}", match.group())]
        # a possessive is not part of the name: "Yefremova's" -> Yefremova
        words = [(match.start() + a, match.start() + b - 2 * bool(_POSSESSIVE.search(m))) for a, b, m in words]
        # cut the run at the first word that is not capitalised (particles are lower case but stay inside)
        kept: list[list[tuple[int, int]]] = [[]]
        for a, b in words:
            word = text[a:b]
            if word[0].isupper():
                kept[-1].append((a, b))
            elif word not in _PARTICLES or not kept[-1]:
                kept.append([])
        for piece in kept:
            if piece:
                yield piece[0][0], piece[-1][1], piece


_PARTICLES = _words("van de der den von da di del della du la le dos das bin al ter ten af zu")


def latin_spans(text: str) -> list[Found]:
    """PERSON and LOCATION spans of Latin-script text."""
    first, last = latin_names()
    found: list[Found] = []
    for _, _, words in _runs(text):
        values = [text[a:b] for a, b in words]
        # drop words that begin sentences or address people without being names (Dear, Hi, Mr, The ...)
        i = 0
        while i < len(values) and _LEADING.fullmatch(values[i]) and i + 1 != len(values):
            i += 1
        if i == len(values) - 1 and _LEADING.fullmatch(values[i]):
            continue
        words, values = words[i:], values[i:]
        if all(v.isupper() and len(v) > 1 for v in values):
            continue  # an all-capitals run is a heading, a code or a town in an address: not read here
        start, end = words[0][0], words[-1][1]
        before = text[max(0, start - 40) : start]
        after = text[end : end + 30]
        cue = _NAME_CUE_BEFORE.search(before)
        if _PLACE_CUE.search(before):
            found.append(Found(start, end, "LOCATION", 0.6))
            continue
        head = values[0].rstrip(".")
        multi = len(values) >= 2
        cued = cue is not None and (multi or cue.group().strip() not in _WEAK_CUES) and len(values) <= 4
        listed = head in first and multi and (head not in AMBIGUOUS_FIRST_NAMES or values[-1] in last)
        initial = len(values) == 3 and len(head) > 1 and re.fullmatch(r"[^\W\d_]\.", values[1]) is not None
        if cued or listed or initial:  # after a cue; First Last; First I. Last
            found.append(Found(start, end, "PERSON", 0.65))
        elif (
            _NAME_CUE_AFTER.match(after)
            and len(values) <= 3
            and (head in first or values[-1] in last or not _SENTENCE_START.search(text[:start]))
        ):  # a capitalised word inside a sentence before "said", "lives": a name, listed or not
            found.append(Found(start, end, "PERSON", 0.6))
        elif not multi and head in first and head not in AMBIGUOUS_FIRST_NAMES and len(head) > 2:
            found.append(Found(start, end, "PERSON", 0.45))
    found += [Found(m.start(), m.end(), "LOCATION", 0.55) for m in _city_pattern().finditer(text)]
    return found


# --- Chinese -------------------------------------------------------------------------------------------------------

_HAN = "\u4e00-\u9fff\u3400-\u4dbf"
_COMPOUND_SURNAMES = _words(
    "欧阳 司马 上官 诸葛 东方 皇甫 令狐 慕容 尉迟 公孙 长孙 宇文 夏侯 轩辕 端木 独孤 南宫 西门 司徒 呼延 闻人 澹台 "
    "公冶 濮阳 淳于 单于 太叔 申屠 钟离 宗政 万俟 赫连 拓跋 百里 东郭 完颜"
)
# Characters no given name holds (function words), and characters that usually begin what follows a name (today,
# lives, phone, Mr ...): a given name read after a cue ends before them.
_FUNCTION_CHARS = frozenset(
    "的了是在和与跟给向请叫让被把对从由找问为及或也都就还又才将要会能我你他她它们这那有无不没个位名说称经已以等里上下中人者号于到过"
)
_FOLLOW_CHARS = _FUNCTION_CHARS | frozenset(
    "今明昨现刚正住家来去年岁男女电手邮身地工先小老同师医教主律总院校阿叔护博士职负责收寄申持签致亲尊感谢通知转问候客用员朋友板患病办"
    "公室部门司打发尽马立帮回确核处办"
)
_CN_CUE_BEFORE = (
    r"(?:我叫|名叫|叫做|我是|本人|姓名|名字|联系人|收件人|收货人|寄件人|申请人|持卡人|开户人|户主|患者|病人|客户|用户|"
    r"员工|同事|朋友|同学|经办人|负责人|签名|签字|署名|致|亲爱的|尊敬的|感谢|请联系|告诉|通知|转告|问候|推荐人|家长|"
    r"管理员|管理人|专员|值班员|操作员|审核人|经手人|"
    r"监护人|法定代表人|法人|代理人|学生|老师|医生|教授|经理|主任|作者|记者|编辑|房东|租客|业主|司机|快递员)"
)
_CN_CUE_AFTER = (
    r"(?:先生|女士|小姐|老师|医生|大夫|教授|经理|主任|同学|师傅|律师|总监|院长|校长|处长|局长|科长|部长|书记|会计|"
    r"阿姨|叔叔|工程师|同志|博士|护士|主管|老板|总|的(?:手机|电话|邮箱|身份证|地址|银行卡|卡号|账号|账户|联系方式|"
    r"微信|家|住址|号码|信用卡|护照)|说|表示|称|告诉|打电话|来电|发邮件|来自|住在|家住|现住|出生|今年|，?(?:男|女)[，,]|"
    r"[，,：:\s（(]*(?:电话|手机|邮箱|身份证)|[，,：:\s（(]+(?:\+?86|1[3-9]\d{9}))"
)


@cache
def _surnames() -> tuple[str, ...]:
    from faker.providers.person.zh_CN import Provider

    return tuple(sorted({*Provider.last_names, *_COMPOUND_SURNAMES}, key=len, reverse=True))


@cache
def _cn_name_patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    surnames = "|".join(_surnames())
    given = rf"[{_HAN}]"
    before = re.compile(rf"{_CN_CUE_BEFORE}[：:\s是为]{{0,2}}(?P<name>(?:{surnames}){given}{given}?)")
    after = re.compile(rf"(?P<name>(?:{surnames}){given}{given}??){_CN_CUE_AFTER}")
    return before, after, re.compile(_CN_CUE_AFTER)


def _cn_names(text: str) -> list[Found]:
    before, after, cue_after = _cn_name_patterns()
    surnames = _surnames()
    found = []
    for match in before.finditer(text):
        start, end = match.span("name")
        surname = next(s for s in surnames if text.startswith(s, start))
        given = text[start + len(surname) : end]
        if given[0] in _FUNCTION_CHARS:
            continue
        # a second given character that usually begins what follows (明天, 住在) stays in the name when a cue after
        # it closes the name ("请联系王小明先生": 王小明)
        if len(given) == 2 and given[1] in _FOLLOW_CHARS and not cue_after.match(text, end):
            end -= 1
        found.append(Found(start, end, "PERSON", 0.7))
    for match in after.finditer(text):
        start, end = match.span("name")
        # the name ends at the cue; read it with two given characters, or one when the surname would then be a
        # function word ("和王伟先生": 王伟, not 和王伟)
        value = text[start:end]
        if len(value) == 3 and value[0] in _FUNCTION_CHARS and value[1:2] in set(surnames):
            start += 1
        value = text[start:end]
        surname = next((s for s in surnames if value.startswith(s)), None)
        if surname is None or any(c in _FUNCTION_CHARS for c in value[len(surname) :]):
            continue
        if any(f.start < end and start < f.end for f in found):
            continue  # read after a cue already ("感谢丁建同学": 丁建, not 谢丁建)
        found.append(Found(start, end, "PERSON", 0.7))
    return found


@cache
def _cn_place_pattern() -> re.Pattern[str]:
    """A known province, city or district name and the administrative units that follow it."""
    from faker.providers.address.zh_CN import Provider

    bare = {re.sub("(?:省|市|自治区|壮族自治区|回族自治区|维吾尔自治区)$", "", p) for p in Provider.provinces}
    names = {*Provider.provinces, *bare, *Provider.cities}
    known = "|".join(sorted(names, key=len, reverse=True))
    districts = "|".join(sorted(Provider.districts, key=len, reverse=True))
    unit = rf"(?:(?![和与及或的在是到从去来、])[{_HAN}]){{1,4}}?(?:自治州|自治县|特别行政区|市|区|县|旗|镇|乡|街道)"
    return re.compile(rf"(?:(?:{known})(?:省|市|自治区|特别行政区)?|(?:{districts})(?:区|县))(?:{unit})*")


# A Chinese street address: street + number + 号, and the building, unit and room after it.
_CN_STREET = re.compile(
    rf"[{_HAN}]{{1,8}}?(?:大道|大街|路|街|巷|弄|胡同|道)\s?\d{{1,5}}(?:-\d{{1,4}})?\s?(?:号|弄)"
    rf"(?:\s?(?:[{_HAN}]{{2,6}}(?:小区|花园|大厦|公寓|广场|中心|苑|园|村))?\s?[\dA-Za-z]{{1,4}}"
    rf"(?:号楼|栋|幢|座|单元|层|楼|室|号|房))*"
)
_CN_ESTATE = re.compile(
    rf"[{_HAN}]{{2,6}}(?:小区|花园|大厦|公寓)\s?[\dA-Za-z]{{1,4}}(?:号楼|栋|幢|座)"
    rf"(?:\s?[\dA-Za-z]{{1,4}}(?:单元|层|楼|室|号|房))*"
)
_ADDRESS_STOP = frozenset("在住址是到寄往送的为于：:，,。、家请我他她你给从由")


def _cn_addresses(text: str, places: list[Found]) -> list[Found]:
    found = []
    for pattern in (_CN_STREET, _CN_ESTATE):
        for match in pattern.finditer(text):
            start, end = match.span()
            # the street name reaches back only to a cue or function character ("住在朝阳路5号": 朝阳路5号)
            head = match.group()
            cut = max((i + 1 for i, c in enumerate(head[:8]) if c in _ADDRESS_STOP), default=0)
            start += cut
            if start >= end:
                continue
            # places right before the street belong to the address
            for place in sorted(places, key=lambda p: -p.end):
                if place.start < start <= place.end or text[place.end : start].isspace():
                    start = place.start
            found.append(Found(start, end, "ADDRESS", 0.8))
    return found


def cn_spans(text: str) -> list[Found]:
    """PERSON, LOCATION and ADDRESS spans of Chinese text."""
    places = [Found(m.start(), m.end(), "LOCATION", 0.6) for m in _cn_place_pattern().finditer(text)]
    return _cn_names(text) + places + _cn_addresses(text, places)


_HAN_CHAR = re.compile(f"[{_HAN}]")


def rule_spans(text: str, *, latin: bool = True) -> list[Found]:
    """Names, places and Chinese addresses in ``text``; ``latin=False`` leaves Latin-script names and places to an
    NER model."""
    found = cn_spans(text) if _HAN_CHAR.search(text) else []
    if latin and _CAPITALISED.search(text):
        found += latin_spans(text)
    return found
