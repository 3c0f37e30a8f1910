"""``prepare`` on samples of real data sets (``tests/samples``) and on small files written here: readers, cleaning,
dedup, splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from leptonkit.data import prepare, read_manifest
from leptonkit.errors import InvalidInputError
from tests.conftest import sample


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def data_rows(path: Path) -> int:
    """Rows of a tsv file with a header line."""
    return len(path.read_text(encoding="utf-8").splitlines()) - 1


@pytest.fixture(scope="module")
def sst2_slice() -> tuple[Path, Path]:
    """The SST-2 sample: the first 1,000 rows of train and 300 of dev."""
    return sample("sst2", "train.tsv"), sample("sst2", "dev.tsv")


def test_sst2_given_splits_keep_their_rows_and_count_every_drop(sst2_slice, tmp_path):
    train, dev = sst2_slice
    manifest = prepare([dev, train], task="classification", out=tmp_path / "out", text_col="sentence", pii="off")
    assert set(manifest["splits"]) == {"train", "valid"}
    valid_in = data_rows(dev)
    assert manifest["splits"]["valid"]["rows"] + manifest["steps"]["dedup"]["dropped"].get("leakage", 0) <= valid_in
    assert manifest["rows"]["in"] == data_rows(train) + valid_in
    assert manifest["rows"]["in"] - manifest["rows"]["out"] == sum(manifest["dropped"].values())
    records = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert len(records) == manifest["splits"]["train"]["rows"]
    assert set(records[0]) == {"text", "label"} and records[0]["label"] in {"0", "1"}
    assert not any(r["text"] != r["text"].strip() for r in records)  # the trailing space of every SST-2 row
    assert manifest["splits"]["train"]["labels"] == dict(Counter(r["label"] for r in records))
    assert {s["split"] for s in manifest["sources"]} == {"train", "valid"}
    assert all(len(s["sha256"]) == 64 for s in manifest["sources"])
    assert read_manifest(tmp_path / "out") == manifest


def test_train_valid_duplicates_leave_the_valid_split_as_leakage(tmp_path):
    train = write_lines(tmp_path / "train.tsv", ["text\tlabel", "a fine film\t1", "a dull film\t0", "A  FINE film\t1"])
    valid = write_lines(tmp_path / "valid.tsv", ["text\tlabel", "a fine film\t1", "a bad film\t0"])
    manifest = prepare([valid, train], task="classification", out=tmp_path / "out", dedup="exact", pii="off")
    assert manifest["dropped"] == {"duplicate": 1, "leakage": 1}
    assert [r["text"] for r in read_jsonl(tmp_path / "out" / "valid.jsonl")] == ["a bad film"]
    assert len(read_jsonl(tmp_path / "out" / "train.jsonl")) == 2


def test_near_duplicates_are_found_with_minhash(tmp_path):
    base = "the committee approved the new budget for schools roads and public parks after a long debate"
    rows = [
        {"text": base, "label": "a"},
        {"text": base + " today", "label": "a"},
        {"text": "something else", "label": "b"},
    ]
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in rows])
    exact = prepare([src], task="classification", out=tmp_path / "exact", dedup="exact", pii="off")
    near = prepare([src], task="classification", out=tmp_path / "near", dedup="near", pii="off")
    assert exact["dropped"] == {}
    assert near["dropped"] == {"duplicate": 1}


def test_generated_splits_are_stratified_and_deterministic(sst2_slice, tmp_path):
    train, _ = sst2_slice
    kwargs = dict(task="classification", text_col="sentence", split="0.8,0.1,0.1", seed=3, pii="off", dedup="exact")
    first = prepare([train], out=tmp_path / "a", **kwargs)
    second = prepare([train], out=tmp_path / "b", **kwargs)
    other = prepare([train], out=tmp_path / "c", **{**kwargs, "seed": 4})
    assert first["content_hash"] == second["content_hash"] != other["content_hash"]
    total = first["rows"]["out"]
    for split, share in (("train", 0.8), ("valid", 0.1), ("test", 0.1)):
        assert abs(first["splits"][split]["rows"] / total - share) < 0.01
    overall = {
        label: n / total
        for label, n in Counter(
            r["label"] for s in ("train", "valid", "test") for r in read_jsonl(tmp_path / "a" / f"{s}.jsonl")
        ).items()
    }
    for split in ("valid", "test"):
        labels = first["splits"][split]["labels"]
        for label, n in labels.items():
            assert abs(n / first["splits"][split]["rows"] - overall[label]) < 0.02


def test_conll_valid_reads_sentences_skips_docstart_and_keeps_iob2(tmp_path):
    source = sample("conll2003", "valid.txt")
    manifest = prepare([source], task="ner", fmt="conll", out=tmp_path / "out", pii="off", dedup="off")
    # counted here from the raw lines: sentences are runs of token lines, -DOCSTART- lines are none
    blocks = [b.splitlines() for b in source.read_text(encoding="utf-8").split("\n\n")]
    sentences = [b for b in blocks if b and not b[0].startswith("-DOCSTART-")]
    assert manifest["rows"]["in"] == len(sentences) > 50
    records = [r for s in manifest["splits"] for r in read_jsonl(tmp_path / "out" / f"{s}.jsonl")]
    assert not any("-DOCSTART-" in r["tokens"] for r in records)
    assert all(len(r["tokens"]) == len(r["tags"]) for r in records)
    assert sorted(r["tokens"] for r in records) == sorted([line.split()[0] for line in s] for s in sentences)
    entities = Counter(t[2:] for r in records for t in r["tags"] if t.startswith("B-"))
    raw = Counter(line.split()[-1][2:] for s in sentences for line in s if line.split()[-1].startswith("B-"))
    assert entities == raw and set(raw) == {"PER", "LOC", "ORG", "MISC"}  # nothing lost


def test_conll_iob1_tags_are_repaired_and_wrong_width_is_reported(tmp_path):
    iob1 = write_lines(tmp_path / "a.conll", ["John I-PER", "Smith I-PER", "met O", "Mary I-PER", ""])
    manifest = prepare([iob1], task="ner", out=tmp_path / "out", pii="off", split="1,0")
    assert read_jsonl(tmp_path / "out" / "train.jsonl")[0]["tags"] == ["B-PER", "I-PER", "O", "B-PER"]
    assert manifest["repaired"]["iob2_tags"] == 2
    bad = write_lines(tmp_path / "b.conll", ["John NNP B-PER", "Smith I-PER", ""])
    with pytest.raises(InvalidInputError, match=r"b\.conll:2: 2 columns where the file has 3"):
        prepare([bad], task="ner", out=tmp_path / "bad", pii="off")


def test_alpaca_json_becomes_sft_messages(tmp_path):
    path = sample("instructions", "instructions.json")
    source = json.loads(path.read_text())
    manifest = prepare([path], task="sft", out=tmp_path / "out", pii="off")
    assert manifest["rows"]["in"] == len(source)
    records = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in records)
    with_input = next(r for r in source if r["input"])
    prompts = {
        r["messages"][0]["content"] for s in manifest["splits"] for r in read_jsonl(tmp_path / "out" / f"{s}.jsonl")
    }
    assert f"{with_input['instruction']}\n\n{with_input['input']}".strip() in prompts


def test_tinyshakespeare_blocks_become_text_records(tmp_path):
    source = sample("tinyshakespeare", "input.txt")
    manifest = prepare([source], task="text", out=tmp_path / "out", pii="off", dedup="exact")
    records = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert records[0]["text"].startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    speeches = [b for b in source.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    assert manifest["rows"]["in"] == len(speeches) > 100 and "\n" in records[0]["text"]


def test_cleaning_normalises_and_drops_with_reasons(tmp_path):
    rows = [
        {"text": "Cafe\u0301\x07  au\tlait\u200b", "label": "x"},
        {"text": "   ", "label": "x"},
        {"text": "y" * 50, "label": "y"},
        {"text": "fine", "label": "y"},
    ]
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(r) for r in rows])
    manifest = prepare([src], task="classification", out=tmp_path / "out", max_chars=20, pii="off", split="1,0")
    assert manifest["steps"]["clean"]["dropped"] == {"empty": 1, "too_long": 1}
    assert read_jsonl(tmp_path / "out" / "train.jsonl")[0]["text"] == "Café au lait"


def test_malformed_lines_fail_with_file_and_line_or_are_skipped_and_counted(tmp_path):
    src = write_lines(
        tmp_path / "in.jsonl", ['{"text": "good one", "label": "a"}', "{not json", '{"text": "b", "label": "b"}']
    )
    with pytest.raises(InvalidInputError, match=r"in\.jsonl:2: invalid JSON"):
        prepare([src], task="classification", out=tmp_path / "out", pii="off")
    assert not (tmp_path / "out").exists()  # nothing half-written
    manifest = prepare([src], task="classification", out=tmp_path / "out", pii="off", on_error="skip", split="1,0")
    assert manifest["dropped"] == {"malformed": 1} and manifest["errors"][0].endswith(
        "in.jsonl:2: invalid JSON (Expecting property name enclosed in double quotes at column 2)"
    )


def test_bad_inputs_are_one_clear_error(tmp_path):
    empty = write_lines(tmp_path / "empty.jsonl", [""])
    with pytest.raises(InvalidInputError, match="holds no records"):
        prepare([empty], task="text", out=tmp_path / "o1")
    one_class = write_lines(tmp_path / "one.csv", ["text,label", "a,1", "b,1"])
    with pytest.raises(InvalidInputError, match="has one class"):
        prepare([one_class], task="classification", out=tmp_path / "o2", pii="off")
    with pytest.raises(InvalidInputError, match=r"no column 'body' for --text-col \(columns: text, label\)"):
        prepare([one_class], task="classification", out=tmp_path / "o3", text_col="body")
    rows = write_lines(tmp_path / "rows.jsonl", ['{"body": "a", "label": "x"}'])
    with pytest.raises(
        InvalidInputError, match=r"rows\.jsonl:1: no column 'text' for --text-col \(columns: body, label\)"
    ):
        prepare([rows], task="classification", out=tmp_path / "o5", text_col="text")
    existing = tmp_path / "o4"
    (existing / "keep.txt").parent.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not empty"):
        prepare([one_class], task="classification", out=existing)
    assert (existing / "keep.txt").read_text() == "mine"


def test_tsv_keeps_bare_quotes_and_csv_parses_quoted_commas(tmp_path):
    tsv = write_lines(tmp_path / "q.tsv", ["text\tlabel", 'he said "hi\t1', "plain\t0"])
    csv_file = write_lines(tmp_path / "q.csv", ["text,label", '"a, b",1', "c,0"])
    prepare([tsv], task="classification", out=tmp_path / "t", pii="off", split="1,0")
    prepare([csv_file], task="classification", out=tmp_path / "c", pii="off", split="1,0")
    assert read_jsonl(tmp_path / "t" / "train.jsonl")[0]["text"] == 'he said "hi'
    assert read_jsonl(tmp_path / "c" / "train.jsonl")[0]["text"] == "a, b"


def test_json_array_streams_across_chunks_and_reports_a_broken_element(tmp_path, monkeypatch):
    from leptonkit.data import sources

    monkeypatch.setattr(sources, "_JSON_CHUNK", 16)  # every record spans several reads
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"text": f"document number {i}"} for i in range(30)], indent=1))
    rows = list(sources.read_rows(good, "json", sources.ReadOptions()))
    assert [r["text"] for _, r in rows] == [f"document number {i}" for i in range(30)]
    assert rows[1][0] == 5  # the line the element starts on (indent=1: 3 lines per element after "[")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"text": "a"},\n{"text": }]')
    with pytest.raises(InvalidInputError, match=r"broken\.json:2: invalid JSON"):
        list(sources.read_rows(broken, "json", sources.ReadOptions()))


def test_plain_text_documents_per_block_line_or_file(tmp_path):
    path = write_lines(tmp_path / "doc.txt", ["one a", "one b", "", "two", "", "", "three"])
    for unit, expected in (("block", 3), ("line", 4), ("file", 1)):
        manifest = prepare([path], task="text", out=tmp_path / unit, doc_unit=unit, pii="off", split="1,0")
        assert manifest["rows"]["out"] == expected


HEADERLESS = [
    '"the film" is a gem , truly\t1',
    "a dull, plodding mess\t0",
    'he said "hi and left\t1',
    "it's not bad , not good\t0",
    '""" odd quotes everywhere ""\t1',
    "flat, flat, flat\t0",
]


def test_headerless_tsv_reads_every_row_with_its_label(tmp_path):
    tsv = write_lines(tmp_path / "sst.tsv", HEADERLESS)
    manifest = prepare([tsv], task="classification", out=tmp_path / "o", pii="off", split="1,0", header=False)
    rows = read_jsonl(tmp_path / "o" / "train.jsonl")
    expected = {line.split("\t")[0]: line.split("\t")[1] for line in HEADERLESS}
    assert {r["text"]: r["label"] for r in rows} == expected
    assert manifest["rows"]["in"] == len(HEADERLESS) and manifest["options"]["header"] is False
    # columns by index, swapped: a label-first file reads the same way
    swapped = write_lines(tmp_path / "swapped.tsv", ["\t".join(reversed(line.split("\t"))) for line in HEADERLESS])
    prepare(
        [swapped], task="classification", out=tmp_path / "s", pii="off", split="1,0", header=False,
        text_col=1, label_col="0",
    )  # fmt: skip
    assert {r["text"]: r["label"] for r in read_jsonl(tmp_path / "s" / "train.jsonl")} == expected


def test_headerless_csv_with_quoted_commas_keeps_its_first_row(tmp_path):
    csv_file = write_lines(tmp_path / "r.csv", ['"good, really good",pos', "bad,neg", '"meh, fine",pos'])
    prepare([csv_file], task="classification", out=tmp_path / "o", pii="off", split="1,0", header=False)
    texts = [r["text"] for r in read_jsonl(tmp_path / "o" / "train.jsonl")]
    assert sorted(texts) == ["bad", "good, really good", "meh, fine"]


def test_headerless_bad_column_index_is_one_clear_error(tmp_path):
    tsv = write_lines(tmp_path / "sst.tsv", HEADERLESS)
    with pytest.raises(InvalidInputError, match=r"no column '5' for --label-col.*2 column") as err:
        prepare([tsv], task="classification", out=tmp_path / "o", pii="off", header=False, label_col=5)
    assert "0 to 1" in str(err.value.hint)
    with pytest.raises(InvalidInputError, match="no column 'text' for --text-col"):
        prepare([tsv], task="classification", out=tmp_path / "o", pii="off", header=False, text_col="text")
    assert not (tmp_path / "o").exists()


GBK_ROWS = ["text\tlabel", "这部电影很好看\t1", "剧情拖沓，演员尴尬\t0", "配乐动人，值得一看\t1", "浪费时间\t0"]


def test_a_gbk_file_is_one_clear_error_naming_the_encoding_and_reads_with_it(tmp_path):
    gbk = tmp_path / "reviews.tsv"
    gbk.write_bytes(("\n".join(GBK_ROWS) + "\n").encode("gbk"))
    with pytest.raises(InvalidInputError, match=r"reviews\.tsv:2: not valid utf-8 text \(byte 11\)") as err:
        prepare([gbk], task="classification", out=tmp_path / "o", pii="off", split="1,0")
    assert "--encoding gbk" in str(err.value.hint)
    assert not (tmp_path / "o").exists()
    prepare([gbk], task="classification", out=tmp_path / "o", pii="off", split="1,0", encoding="gbk")
    rows = read_jsonl(tmp_path / "o" / "train.jsonl")
    assert sorted((r["text"], r["label"]) for r in rows) == sorted(tuple(r.split("\t")) for r in GBK_ROWS[1:])
    with pytest.raises(InvalidInputError, match="unknown --encoding 'klingon'"):
        prepare([gbk], task="classification", out=tmp_path / "k", pii="off", encoding="klingon")


def test_a_late_bad_byte_in_text_is_reported_at_its_line(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_bytes(("fine line\n" * 5000).encode() + "坏行\n".encode("gbk"))
    with pytest.raises(InvalidInputError, match=r"notes\.txt:5001: not valid utf-8 text \(byte 50000\)"):
        prepare([text], task="text", out=tmp_path / "o", pii="off", doc_unit="line")
