"""An int4 version (``models quantize --method int4``) is portable: its stored weights do not depend on the CPU that
quantised it.

ATen packs int4 rows for the CPU it runs on (AVX2, AVX-512, or neither); ``ATEN_CPU_CAPABILITY=default`` makes a
process use the plain kernels, so a second process stands in for a machine with other vector instructions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from leptonkit.errors import InvalidInputError
from leptonkit.registry import Registry
from leptonkit.registry.loading import load_model
from leptonkit.registry.quantized import QUANTIZATION_FILE

IDS = [[5, 17, 42, 99, 230, 7, 311, 64]]

LOGITS = """
import json, sys, torch
from leptonkit.registry import Registry
from leptonkit.registry.loading import load_model
loaded = load_model(sys.argv[2], registry=Registry(sys.argv[1]))
with torch.inference_mode():
    logits = loaded.model(torch.tensor(json.loads(sys.argv[3]))).logits
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "logits": logits.float().tolist()}))
"""


@pytest.fixture(scope="module")
def int4_home(tmp_path_factory: pytest.TempPathFactory, trained_generator) -> tuple[Registry, str]:
    from leptonkit.train.quantize import quantize

    registry = Registry(tmp_path_factory.mktemp("int4-home"))
    registry.register(str(trained_generator), name="tiny", task="generation")
    return registry, quantize("tiny:1", method="int4", registry=registry).ref


def test_an_int4_version_gives_the_same_logits_on_a_cpu_with_other_vector_instructions(int4_home):
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("this CPU runs ATen's plain kernels already: there is no other packing to compare with")
    registry, ref = int4_home
    loaded = load_model(ref, registry=registry)
    with torch.inference_mode():
        here = loaded.model(torch.tensor(IDS)).logits.float()
    env = os.environ | {"ATEN_CPU_CAPABILITY": "default"}
    done = subprocess.run(
        [sys.executable, "-c", LOGITS, str(registry.home), ref, json.dumps(IDS)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    there = json.loads(done.stdout.strip().splitlines()[-1])
    assert there["capability"] == "DEFAULT"
    other = torch.tensor(there["logits"])
    # the two kernels sum in another order, in bfloat16: agreement to its rounding (rows packed for another CPU's
    # layout were off by the logits' whole range)
    assert (other - here).abs().max() <= 0.02 * here.abs().max()
    assert torch.equal(other.argmax(-1), here.argmax(-1))


def test_an_int4_version_stored_in_the_old_packed_format_is_one_clear_error(int4_home):
    registry, ref = int4_home
    info_path = registry.resolve(ref) / QUANTIZATION_FILE
    info = json.loads(info_path.read_text())
    assert info["format"] == "state_dict"
    info_path.write_text(json.dumps(info | {"format": "torch.save"}))
    try:
        with pytest.raises(InvalidInputError, match=r"stored as 'torch\.save', which this leptonkit no longer reads"):
            load_model(ref, registry=registry)
    finally:
        info_path.write_text(json.dumps(info))
