"""Start the sandbox's IPython kernel with less to import (the image's entrypoint runs it).

``import jupyter_client`` runs its package ``__init__``, which imports every client, kernel
manager and provisioner (and, through them, ``importlib.metadata``'s entry points): about a
fifth of a fresh kernel's start, for code a kernel never runs. Here the package is registered
without running that ``__init__``; its names still resolve, on first use, from the submodule
that defines them. Anything going wrong falls back to the ordinary import.

The sandbox agent (``sandcell_agent``: files and processes over gRPC on ``/conn/agent.sock``)
is forked from here before the kernel imports anything: it shares this interpreter's start
instead of paying for its own, and it imports only grpc and the standard library. The kernel
watches it: when the agent dies, the kernel exits too, so the container stops and the gateway
marks the sandbox dead, as for a dead kernel. Why the agent died is left in
``/conn/agent.exit`` for the gateway to tell.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
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

AGENT_SOCKET = "/conn/agent.sock"
AGENT_EXIT = "/conn/agent.exit"  # why the agent stopped, for the gateway's error message
AGENT_DIED = 3  # the kernel's exit code when it stops because the agent did


# Standard library both processes import (grpc's own import pulls in asyncio): loaded once,
# before the fork, the agent gets them for free instead of importing them a second time.
# None starts a thread, so the fork stays safe. About 50 ms of CPU per sandbox (agent import
# 80 -> 27 ms), docs/sandbox-cost.md.
SHARED = ("asyncio", "concurrent.futures", "ctypes", "dataclasses", "datetime", "hashlib",
          "inspect", "pathlib", "pickle", "random", "shutil", "typing")


def start_agent() -> int:
    """Fork the agent (before any thread exists, so the fork is safe); return its pid."""
    for name in SHARED:
        importlib.import_module(name)
    pid = os.fork()
    if pid == 0:  # the agent; it never returns into the kernel's code
        code = 1
        try:
            os.setpgid(0, 0)  # signals meant for the kernel's group do not reach it
            from sandcell_agent.server import run

            code = run(AGENT_SOCKET, os.environ.get("HOME", "/home/sandbox"), "/tmp")
        except BaseException as exc:  # noqa: BLE001 - reported, then the process ends
            print(f"sandcell agent: {exc!r}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    return pid


def watch_agent(pid: int) -> None:
    """End the kernel (and so the container) when the agent stops, saying why."""
    def watch() -> None:
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            why = f"killed by signal {os.WTERMSIG(status)}"
        else:
            why = f"exited with code {os.waitstatus_to_exitcode(status)}"
        try:
            with open(AGENT_EXIT, "w") as out:
                out.write(why)
        except OSError:
            pass  # the exit code still says it was the agent
        print(f"sandcell-kernel: the sandbox agent {why}; stopping", file=sys.stderr, flush=True)
        os._exit(AGENT_DIED)

    threading.Thread(target=watch, name="sandcell-agent-watch", daemon=True).start()


def main() -> None:
    if os.environ.get("SANDCELL_AGENT", "1") != "0":
        watch_agent(start_agent())
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
