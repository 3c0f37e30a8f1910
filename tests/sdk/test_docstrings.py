"""Every example in the SDK's and the services' docstrings runs (``doctest``), so the documented usage stays true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "leptonkit.serve.services.declare",
    "leptonkit.sdk.resources",
    "leptonkit.sdk.model",
    "leptonkit.sdk.training",
    "leptonkit.sdk.deployment",
    "leptonkit.data.infer",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, home):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, raise_on_error=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
