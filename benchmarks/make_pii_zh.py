"""Build the Chinese PII evaluation set: sentence templates written for leptonkit, filled with Faker ``zh_CN`` values,
in presidio-research's format (what ``leptonkit data pii-eval`` reads), as a dev half and a test half.

    .venv/bin/python benchmarks/make_pii_zh.py        # writes benchmarks/data/pii_zh_{dev,test}.json

The templates are split once, by a seeded shuffle, into two disjoint halves (``template_id`` names each): the dev
half is for tuning the detector, the test half for reporting (``benchmarks/pii_eval_zh.py``). Each template is
filled ``FILLS`` times. Everything is synthetic: Faker's names, numbers and places, no real personal data. Person
names come from Faker's ``zh_CN`` surname and given-name lists; the detector reads the surnames but not the given
names. Places come from Faker's province, city and district lists, which the detector's gazetteer also holds, so
LOCATION recall here is an upper bound for places outside those lists.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from faker import Faker

from leptonkit.privacy.recognizers import cn_id_ok, luhn_ok

OUT = Path(__file__).resolve().parent / "data"
SEED = 20261206
FILLS = 12

# One sentence (or form) a template; {TYPE} is a value of that presidio type. A few hold no PII, and a few hold a
# name with no cue around it, as real text does.
TEMPLATES = [
    "您好，我叫{PERSON}，手机号是{PHONE_NUMBER}，麻烦帮我查一下订单。",
    "请联系{PERSON}先生，电话{PHONE_NUMBER}，他负责这次的售后。",
    "收件人：{PERSON}\n电话：{PHONE_NUMBER}\n地址：{STREET_ADDRESS}",
    "快递请寄到{STREET_ADDRESS}，收件人{PERSON}，联系电话{PHONE_NUMBER}。",
    "{PERSON}女士的身份证号码为{CN_ID_CARD}，请核对后办理。",
    "申请人姓名：{PERSON}，身份证号：{CN_ID_CARD}，联系电话：{PHONE_NUMBER}",
    "我的银行卡号是{CREDIT_CARD}，昨天被重复扣款了两次。",
    "持卡人{PERSON}，卡号{CREDIT_CARD}，请尽快冻结这张卡。",
    "退款请打到这张卡：{CREDIT_CARD}，户名{PERSON}。",
    "有问题可以发邮件到{EMAIL_ADDRESS}，我们会在两个工作日内回复。",
    "{PERSON}老师的邮箱是{EMAIL_ADDRESS}，作业请发给她。",
    "用户从{IP_ADDRESS}登录失败了五次，账号已被临时锁定。",
    "检测到来自{IP_ADDRESS}的异常访问，请管理员{PERSON}尽快处理。",
    "服务器{IP_ADDRESS}的磁盘快满了，已经通知运维。",
    "我现在住在{STREET_ADDRESS}，离地铁站大概十分钟。",
    "公司地址：{STREET_ADDRESS}，欢迎来访。",
    "我下周要去{LOCATION}出差，大概待三天。",
    "{PERSON}来自{LOCATION}，今年刚大学毕业。",
    "这批货从{LOCATION}发出，预计周五到达{LOCATION}。",
    "患者{PERSON}，女，45岁，因头痛入院，家属电话{PHONE_NUMBER}。",
    "客户{PERSON}反映，他的手机{PHONE_NUMBER}一直收不到验证码。",
    "王经理说明天的会议改到下午三点，大家注意一下。",
    "这家餐厅的菜味道不错，就是等位时间有点长。",
    "物流显示包裹已经到达{LOCATION}转运中心。",
    "紧急联系人：{PERSON}，关系：母亲，手机：{PHONE_NUMBER}",
    "请把合同扫描件发到{EMAIL_ADDRESS}，抄送{EMAIL_ADDRESS}。",
    "感谢{PERSON}同学的帮助，这个问题终于解决了。",
    "租客{PERSON}的身份证号{CN_ID_CARD}已登记，押金两个月。",
    "业主{PERSON}，房屋地址{STREET_ADDRESS}，联系方式{PHONE_NUMBER}。",
    "如需开发票，请提供抬头和邮箱，例如{EMAIL_ADDRESS}。",
    "昨天{PERSON}在会上提出了新的方案，大家都觉得可行。",
    "{PERSON}的电话是{PHONE_NUMBER}，有事直接打给他。",
    "登录日志：2024-03-05 10:22:31 用户{EMAIL_ADDRESS} 来源{IP_ADDRESS} 登录成功",
    "尊敬的{PERSON}，您的信用卡{CREDIT_CARD}本期账单已出。",
    "我在{LOCATION}上的大学，后来去{LOCATION}工作了几年。",
    "新店开在{STREET_ADDRESS}，开业前三天全场八折。",
    "报名请联系{PERSON}，手机{PHONE_NUMBER}，或发邮件至{EMAIL_ADDRESS}。",
    "身份证号{CN_ID_CARD}的用户实名认证未通过，请重新上传照片。",
    "付款失败：卡号{CREDIT_CARD}余额不足。",
    "这本书的作者是{PERSON}，写得很有意思。",
    "司机{PERSON}已接单，车牌尾号为372，电话{PHONE_NUMBER}。",
    "会议纪要由{PERSON}整理，如有遗漏请补充。",
    "我们在{LOCATION}和{LOCATION}都有分公司。",
    "寄件人：{PERSON}（{PHONE_NUMBER}），寄件地址：{STREET_ADDRESS}",
    "网站后台显示该订单的下单IP为{IP_ADDRESS}，收货地址为{STREET_ADDRESS}。",
    "请{PERSON}医生明天上午九点到三楼会诊。",
    "今天天气很好，我们去公园散步了。",
    "联系人：{PERSON}\n邮箱：{EMAIL_ADDRESS}\n电话：{PHONE_NUMBER}",
    "{PERSON}和{PERSON}是同一个项目组的同事。",
    "他的老家在{LOCATION}，每年春节都要回去。",
    "法定代表人{PERSON}，身份证号码{CN_ID_CARD}，住所{STREET_ADDRESS}。",
    "银行卡{CREDIT_CARD}的预留手机号是{PHONE_NUMBER}。",
    "麻烦把发票寄到{STREET_ADDRESS}，谢谢！",
    "这个账号{EMAIL_ADDRESS}已经很久没有登录了。",
    "防火墙拦截了{IP_ADDRESS}对22端口的扫描。",
    "请转告{PERSON}，明天的体检改到八点。",
    "我叫{PERSON}，今年三十二岁，在{LOCATION}做软件开发。",
    "家长{PERSON}的联系电话为{PHONE_NUMBER}，孩子在三年级二班。",
    "本次活动由{PERSON}主持，地点在{STREET_ADDRESS}。",
    "{PERSON}，男，身份证号{CN_ID_CARD}，现住{STREET_ADDRESS}。",
    "客服回复：已为您备注，稍后{PERSON}专员会致电{PHONE_NUMBER}。",
    "你好，我是{PERSON}，想咨询一下贷款的事情。",
    "签名：{PERSON}\n日期：2023年11月8日",
    "今年的年会在{LOCATION}举行，具体酒店还没定。",
    "VPN连接来自{IP_ADDRESS}，用户名{EMAIL_ADDRESS}。",
    "信用卡尾号不对，完整卡号应该是{CREDIT_CARD}。",
    "麻烦帮我改一下收货电话，新号码是{PHONE_NUMBER}。",
    "{PERSON}教授的研究方向是自然语言处理，办公室在{STREET_ADDRESS}。",
    "我和{PERSON}约好周六在{LOCATION}见面。",
    "如有疑问请致电客服热线{PHONE_NUMBER}或访问官网。",
    "该患者身份证{CN_ID_CARD}，医保卡已绑定。",
    "转账给{PERSON}的账户{CREDIT_CARD}，金额五千元。",
    "新版本修复了若干问题，建议所有用户升级。",
    "亲爱的{PERSON}，祝你生日快乐！",
    "邮寄地址：{STREET_ADDRESS}（请勿放快递柜）",
    "{LOCATION}今天下了大雨，航班都延误了。",
]


def _mobile(fake: Faker, rng: random.Random) -> str:
    digits = fake.phone_number()
    style = rng.randrange(6)
    if style == 1:
        return f"{digits[:3]} {digits[3:7]} {digits[7:]}"
    if style == 2:
        return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
    if style == 3:
        return f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}"
    if style == 4:
        return f"+86{digits}"
    return digits


def _landline(fake: Faker, rng: random.Random) -> str:
    area = rng.choice(["010", "021", "022", "023", "020", "0755", "0571", "025", "027", "028", "0512", "0731"])
    number = f"{rng.randint(2, 8)}{rng.randrange(10**7):07d}"[: 8 if len(area) == 3 else rng.choice([7, 8])]
    return rng.choice([f"{area}-{number}", f"({area}){number}", f"{area} {number}"])


def _id_card(fake: Faker) -> str:
    while True:
        value = fake.ssn()
        if cn_id_ok(value):
            return value


def _card(fake: Faker, rng: random.Random) -> str:
    if rng.random() < 0.6:  # UnionPay: 62, 16 or 19 digits, Luhn
        body = "62" + "".join(str(rng.randrange(10)) for _ in range(rng.choice([13, 16])))
        number = body + next(d for d in "0123456789" if luhn_ok(body + d))
    else:
        number = fake.credit_card_number(card_type=rng.choice(["visa", "mastercard"]))
    if rng.random() < 0.3 and len(number) == 16:
        return " ".join(number[i : i + 4] for i in range(0, 16, 4))
    return number


def _address(fake: Faker, rng: random.Random) -> str:
    city = fake.city_name()
    parts = [fake.province() if rng.random() < 0.4 else "", city + "市", fake.district() + "区"]
    if rng.random() < 0.3:
        parts = parts[1:] if rng.random() < 0.5 else [city + "市"]
    street = fake.street_name().replace("路", rng.choice(["路", "大道", "中路", "北路"]), 1)
    parts.append(f"{street}{rng.randint(1, 999)}号")
    tail = rng.random()
    if tail < 0.35:
        parts.append(f"{rng.randint(1, 30)}栋{rng.randint(1, 6)}单元{rng.randint(1, 33)}{rng.randint(1, 4):02d}室")
    elif tail < 0.55:
        parts.append(f"{fake.last_name()}{rng.choice(['花园', '小区', '大厦'])}{rng.randint(1, 20)}号楼")
    return "".join(parts)


def _place(fake: Faker, rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        return fake.province()
    if kind < 0.75:
        return fake.city_name() + ("市" if rng.random() < 0.4 else "")
    return f"{fake.city_name()}市{fake.district()}区"


def _ip(fake: Faker, rng: random.Random) -> str:
    return fake.ipv6() if rng.random() < 0.15 else fake.ipv4_public()


def fill(template: str, fake: Faker, rng: random.Random) -> dict:
    """One record: the template with each {TYPE} replaced by a fresh value, its span recorded."""
    makers = {
        "PERSON": fake.name,
        "PHONE_NUMBER": lambda: _mobile(fake, rng) if rng.random() < 0.8 else _landline(fake, rng),
        "CN_ID_CARD": lambda: _id_card(fake),
        "CREDIT_CARD": lambda: _card(fake, rng),
        "EMAIL_ADDRESS": lambda: fake.free_email() if rng.random() < 0.5 else fake.email(),
        "IP_ADDRESS": lambda: _ip(fake, rng),
        "STREET_ADDRESS": lambda: _address(fake, rng),
        "LOCATION": lambda: _place(fake, rng),
    }
    text, spans = "", []
    for i, piece in enumerate(re.split(r"\{([A-Z_]+)\}", template)):
        if i % 2:
            value = makers[piece]()
            spans.append(
                {"entity_type": piece, "entity_value": value, "start_position": len(text), "end_position": len(text)}
            )
            text += value
            spans[-1]["end_position"] = len(text)
        else:
            text += piece
    return {"full_text": text, "masked": template, "spans": spans}


def build() -> dict[str, list[dict]]:
    fake = Faker("zh_CN")
    fake.seed_instance(SEED)
    rng = random.Random(SEED)
    order = list(range(len(TEMPLATES)))
    rng.shuffle(order)
    halves = {"dev": sorted(order[: len(order) // 2]), "test": sorted(order[len(order) // 2 :])}
    return {
        part: [fill(TEMPLATES[t], fake, rng) | {"template_id": t} for t in ids for _ in range(FILLS)]
        for part, ids in halves.items()
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for part, records in build().items():
        lines = ",\n".join(json.dumps(r, ensure_ascii=False) for r in records)
        (OUT / f"pii_zh_{part}.json").write_text(f"[\n{lines}\n]\n", encoding="utf-8")
        print(f"wrote {OUT / f'pii_zh_{part}.json'}: {len(records)} records")


if __name__ == "__main__":
    main()
