"""Start the sandbox's IPython kernel with less to import (the image's entrypoint runs it).

``import jupyter_client`` runs its package ``__init__``, which imports every client, kernel
manager and provisioner (and, through them, ``importlib.metadata``'s entry points): about a
fifth of a fresh kernel's start, for code a kernel never runs. Here the package is registered
without running that ``__init__``; its names still resolve, on first use, from the submodule
that defines them. Anything going wrong falls back to the ordinary import.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

# where jupyter_client's __init__ takes its public names from, in its own order
SUBMODULES = ("_version", "connect", "launcher", "client", "blocking", "asynchronous",
              "manager", "multikernelmanager", "provisioning")


def lazy_package(name: str, submodules: tuple[str, ...]) -> types.ModuleType | None:
    """``name`` as a package whose attributes load from ``submodules`` on first access."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        return None
    module = importlib.util.module_from_spec(spec)

    def __getattr__(attr: str) -> Any:
        for sub in submodules:
            found = importlib.import_module(f"{name}.{sub}")
            if hasattr(found, attr):
                value = getattr(found, attr)
                setattr(module, attr, value)
                return value
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


def main() -> None:
    if "jupyter_client" not in sys.modules:
        try:
            module = lazy_package("jupyter_client", SUBMODULES)
        except Exception:  # an unexpected layout: import it the ordinary way
            module = None
        if module is not None:
            sys.modules["jupyter_client"] = module
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
