"""``leptonkit data ...`` as a user runs it: real subprocesses, JSON output, one-line errors with exit code 2."""

from __future__ import annotations

import json

from tests.conftest import sample


def test_prepare_cli_writes_the_dataset_and_prints_the_manifest(cli, tmp_path):
    src = tmp_path / "tickets.jsonl"
    src.write_text("\n".join(json.dumps({"text": f"row {i} mail a{i}@x.io", "label": "ab"[i % 2]}) for i in range(20)))
    result = cli(
        "data",
        "prepare",
        str(src),
        "--task",
        "classification",
        "--out",
        str(tmp_path / "out"),
        "--json",
        "--pii-model",
        "none",
    )
    assert result.returncode == 0, result.stderr
    manifest = result.json()
    assert manifest["pii"]["counts"] == {"EMAIL": 20}
    assert sum(s["rows"] for s in manifest["splits"].values()) == 20
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["content_hash"] == manifest["content_hash"]


def test_prepare_cli_errors_are_one_line_with_exit_2(cli, tmp_path):
    conll = tmp_path / "bad.conll"
    conll.write_text("EU NNP B-ORG\nrejects O\n")
    result = cli("data", "prepare", str(conll), "--task", "ner", "--out", str(tmp_path / "o"), "--pii", "off")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {conll}:2: 2 columns where the file has 3 (fix the line, or pass --on-error skip)"
    ]
    missing = cli("data", "prepare", str(tmp_path / "nope.csv"), "--task", "text", "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr


def test_redact_cli_is_a_pipeline_filter(cli):
    result = cli("data", "redact", "--pii-model", "none", input="ip 10.1.2.3\nssn 125-17-4954, ok\n")
    assert result.returncode == 0
    assert result.stdout == "ip [IP]\nssn [US_SSN], ok\n"


def test_pii_eval_cli_json_shape(cli):
    path = sample("pii", "synthetic_pii.json")  # Faker-made, presidio-research format
    result = cli("data", "pii-eval", str(path), "--pii-model", "none", "--limit", "60", "--json")
    assert result.returncode == 0, result.stderr
    out = result.json()
    assert set(out["overall"]) >= {"precision", "recall", "f1", "char_recall", "char_precision"}
    assert out["per_type"]["EMAIL"]["char_recall"] == 1.0 and out["records_per_s"] > 0
    emails = sum(s["entity_type"] == "EMAIL_ADDRESS" for r in json.loads(path.read_text())[:60] for s in r["spans"])
    assert out["records"] == 60 and out["per_type"]["EMAIL"]["support"] == emails > 0


def test_prepare_cli_no_header_reads_columns_by_index_and_rejects_a_bad_index(cli, tmp_path):
    tsv = tmp_path / "sst.tsv"
    tsv.write_text('"so good" , I cried\t1\nbad, bad film\t0\nhe said "meh\t1\ndull\t0\n', encoding="utf-8")
    out = tmp_path / "o"
    args = ("data", "prepare", str(tsv), "--task", "classification", "--pii", "off", "--split", "1,0", "--json")
    result = cli(*args, "--out", str(out), "--no-header", "--text-col", "0", "--label-col", "1")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted((r["text"], r["label"]) for r in rows) == [
        ('"so good" , I cried', "1"),
        ("bad, bad film", "0"),
        ("dull", "0"),
        ('he said "meh', "1"),
    ]
    bad = cli(*args, "--out", str(tmp_path / "b"), "--no-header", "--label-col", "2")
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "no column '2' for --label-col" in lines[0] and "0 to 1" in lines[0]


def test_redact_cli_masks_chinese_phone_and_id_numbers(cli):
    first17 = "11010119900307451"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    number = first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]
    wrong = number[:17] + ("0" if number[-1] != "0" else "1")
    text = f"我的手机号是13812345678，身份证号{number}\n号码{wrong}有误，编号12345678901\n"
    result = cli("data", "redact", input=text)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"我的手机号是[PHONE]，身份证号[CN_ID_CARD]\n号码{wrong}有误，编号12345678901\n"


def test_prepare_cli_gbk_input_is_one_line_naming_encoding_gbk(cli, tmp_path):
    gbk = tmp_path / "r.tsv"
    gbk.write_bytes("好看\t1\n难看\t0\n很好看\t1\n太难看了\t0\n".encode("gbk"))
    args = ("data", "prepare", str(gbk), "--task", "classification", "--pii", "off", "--no-header", "--split", "1,0")
    bad = cli(*args, "--out", str(tmp_path / "b"))
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "not valid utf-8" in lines[0] and "--encoding gbk" in lines[0], bad.stderr
    good = cli(*args, "--out", str(tmp_path / "g"), "--encoding", "gbk", "--json")
    assert good.returncode == 0, good.stderr
    texts = {json.loads(line)["text"] for line in (tmp_path / "g" / "train.jsonl").read_text("utf-8").splitlines()}
    assert texts == {"好看", "难看", "很好看", "太难看了"}
