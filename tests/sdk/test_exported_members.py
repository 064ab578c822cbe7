"""Everything public is in ``sandcell.__all__``, which is sorted (as httpx's test does)."""

from __future__ import annotations

import types

import sandcell


def test_all_public_names_are_exported_and_sorted() -> None:
    # a subpackage (sandcell.jupyter) becomes an attribute once imported: it is not a name
    public = [name for name, value in vars(sandcell).items()
              if (not name.startswith("_") or name == "__version__")
              and not isinstance(value, types.ModuleType)]
    assert sandcell.__all__ == sorted(public)


def test_every_exported_class_has_a_docstring_with_an_example() -> None:
    for name in sandcell.__all__:
        member = getattr(sandcell, name)
        if isinstance(member, type):
            doc = member.__doc__ or ""
            assert ">>>" in doc or "Example::" in doc, name


def test_version_is_a_string() -> None:
    assert isinstance(sandcell.__version__, str) and sandcell.__version__.count(".") == 2
