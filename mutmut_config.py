"""mutmut 2 hooks for ``make mutate`` (mutmut imports this module from the working directory).

The mutation check covers the security-critical code only, each module against its own fast
unit tests (no Docker), so one run takes minutes: a mutant a module's own tests do not notice
is a promise those tests do not hold. In ``kernel.py`` and ``base.py`` only the output caps
(``Inbox``) and the token check are in scope; the rest of those modules is proven by the Docker suite.
"""

from __future__ import annotations

import ast
import functools
import os
from typing import Any

GATEWAY = "kernel_gateway/sandcell_gateway/"

# module -> (its unit tests, the top-level functions/classes to mutate; None: all of it)
SCOPE: dict[str, tuple[list[str], set[str] | None]] = {
    GATEWAY + "tenants.py": (["tests/gateway/test_tenants.py"], None),
    GATEWAY + "base.py": (["tests/gateway/test_auth.py"], {"BaseHandler._authenticate",
                                                          "BaseHandler.prepare"}),
    GATEWAY + "cells.py": (["tests/gateway/test_inbox.py", "tests/gateway/test_jupyter_history.py"],
                           None),
    GATEWAY + "kernel.py": (["tests/gateway/test_inbox.py"], {"Inbox"}),
    GATEWAY + "jupyter_history.py": (["tests/gateway/test_jupyter_history.py"], None),
    GATEWAY + "validation.py": (["tests/gateway/test_validation.py"], None),
    "kernel_gateway/sandcell_agent/paths.py": (["tests/agent/test_paths.py",
                                                "tests/agent/test_agent.py"], None),
}

# The repository's pytest plugins that the unit tests do not use (schemathesis, hypothesis,
# nbval, playwright...) take ~6 s to load, which would dominate every mutant's run.
os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
# ``-p mutmut_config`` loads this module into pytest too, for pytest_sessionfinish below.
RUNNER = "python -m pytest -x -q -p no:cacheprovider -p pytest_timeout -p mutmut_config "


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    """A mutant that breaks the import kills it too. mutmut 2 counts only exit status 1 (a
    test failed) as killed; a module that does not even import (``{*msg, "k": v}`` is a
    SyntaxError) ends the run with 2 (collection error), which it would report as a survivor.
    4 and 5 (bad arguments, no tests) stay survivors: they are this file's mistakes."""
    if exitstatus in (2, 3):  # interrupted by errors, internal error
        session.exitstatus = 1


@functools.cache
def _spans(filename: str) -> list[tuple[str, int, int]]:
    """(qualified name, first line, last line) of every top-level def/class and method."""
    with open(filename, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    spans = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            spans.append((node.name, node.lineno, node.end_lineno or node.lineno))
        if isinstance(node, ast.ClassDef):
            spans.extend((f"{node.name}.{m.name}", m.lineno, m.end_lineno or m.lineno)
                         for m in node.body
                         if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return spans


# A line whose comment says "truth only:" holds a flag read only for its truth, so the mutant
# that puts None for its False is equivalent; its other mutants (True) still run.
TRUTH_ONLY = "truth only:"


def _none_for_false(context: Any) -> bool:
    import mutmut

    line = context.current_source_line
    if TRUTH_ONLY not in line:
        return False
    mutant = mutmut.Context(source=context.source, mutation_id=context.mutation_id,
                            filename=context.filename)
    changed = mutmut.mutate(mutant)[0].split("\n")[context.current_line_index]
    return changed.replace("None", "False") == line


def pre_mutation(context: Any) -> None:
    tests, names = SCOPE[os.path.normpath(context.filename)]
    line = context.current_line_index + 1  # mutmut counts lines from 0
    if names is not None and not any(name in names and first <= line <= last
                                     for name, first, last in _spans(context.filename)):
        context.skip = True
        return
    if _none_for_false(context):
        context.skip = True
        return
    context.config.test_command = RUNNER + " ".join(tests)
