"""The runnable examples in the I/O-free modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

MODULES = ["sandcell._agent_models", "sandcell._config", "sandcell._core", "sandcell._exceptions", "sandcell._models",
           "sandcell._streaming", "sandcell.jupyter._wire"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    results = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert results.attempted > 0
    assert results.failed == 0


def test_the_mock_transport_example_in_docs_sdk_md_runs() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
    section = docs.read_text(encoding="utf-8").split("## Testing your code with `MockTransport`")[1]
    code = section.split("```python\n")[1].split("```")[0]
    exec(compile(code, str(docs), "exec"), {})
