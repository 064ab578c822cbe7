"""Scenarios of the unmodified E2B SDKs, run by test_e2b.py in a process of their own each,
configured by the environment only (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY).

``python e2b_scenarios.py NAME [ARG]`` prints one line ``RESULT <json>``: what the SDK
returned or raised. The test judges that line, never the exit status (the SDK's HTTP
library can abort at interpreter shutdown; docs/e2b.md).
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import Callable
from typing import Any

from e2b import (
    FileNotFoundException,
    NotFoundException,
    PtySize,
    TimeoutException,
)
from e2b.sandbox.commands.command_handle import CommandExitException
from e2b_code_interpreter import AsyncSandbox, Sandbox

Result = dict[str, Any]


def raised(call: Callable[[], Any]) -> str:
    """The name of the exception ``call`` raised ("" if none), checked to be E2B's own."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test compares the class name with E2B's
        return type(exc).__name__
    return ""


def snippet() -> Result:
    sbx = Sandbox.create()
    try:
        text = sbx.run_code("x=41; x+1").text
        sbx.files.write("a.txt", "hi")
        return {"text": text, "read": sbx.files.read("a.txt"),
                "stdout": sbx.commands.run("echo hi").stdout, "id": sbx.sandbox_id}
    finally:
        sbx.kill()


async def _async_snippet() -> Result:
    sbx = await AsyncSandbox.create()
    try:
        text = (await sbx.run_code("x=41; x+1")).text
        await sbx.files.write("a.txt", "hi")
        return {"text": text, "read": await sbx.files.read("a.txt"),
                "stdout": (await sbx.commands.run("echo hi")).stdout, "id": sbx.sandbox_id}
    finally:
        await sbx.kill()


def async_snippet() -> Result:
    return asyncio.run(_async_snippet())


def rich() -> Result:
    with Sandbox.create() as sbx:
        plot = sbx.run_code("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
        frame = sbx.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]})")
        error = sbx.run_code("print('out')\nraise ValueError('bad')")
        return {"plot": [sorted(r.formats()) for r in plot.results],
                "png_head": plot.results[0].png[:8] if plot.results else None,
                "html": frame.results[0].html if frame.results else None,
                "main": frame.results[0].is_main_result if frame.results else None,
                "error": [error.error.name, error.error.value] if error.error else None,
                "stdout": error.logs.stdout, "count": error.execution_count}


def errors() -> Result:
    with Sandbox.create() as sbx:
        try:
            sbx.commands.run("echo oops >&2; exit 3")
            exit_code, stderr = None, None
        except CommandExitException as exc:
            exit_code, stderr = exc.exit_code, exc.stderr
        return {"missing_file": raised(lambda: sbx.files.read("nope.txt")),
                "missing_file_is_not_found": issubclass(FileNotFoundException, NotFoundException),
                "exit": raised(lambda: sbx.commands.run("exit 3")),
                "exit_code": exit_code, "stderr": stderr,
                "command_timeout": raised(lambda: sbx.commands.run("sleep 30", timeout=1)),
                "code_timeout": raised(lambda: sbx.run_code("import time; time.sleep(30)",
                                                            timeout=1)),
                "after_timeout": sbx.run_code("1+1").text,
                "timeout_class": TimeoutException.__name__}


def kill() -> Result:
    sbx = Sandbox.create()
    first, second = sbx.kill(), sbx.kill()
    return {"first": first, "second": second, "running": sbx.is_running(),
            "info": raised(lambda: Sandbox.get_info(sbx.sandbox_id)),
            "by_id": Sandbox.kill(sbx.sandbox_id)}


def create(template: str = "") -> Result:
    sbx = Sandbox.create(template) if template else Sandbox.create()
    return {"id": sbx.sandbox_id, "template": sbx.get_info().template_id}


def other_tenant(sandbox_id: str) -> Result:
    """Another tenant's key: its sandbox is not found, as an id that never existed."""
    return {"connect": raised(lambda: Sandbox.connect(sandbox_id)),
            "info": raised(lambda: Sandbox.get_info(sandbox_id)),
            "kill": Sandbox.kill(sandbox_id),
            "listed": [s.sandbox_id for s in Sandbox.list().next_items()]}


def cleanup(sandbox_id: str) -> Result:
    return {"killed": Sandbox.kill(sandbox_id)}


def stdin_and_signals() -> Result:
    with Sandbox.create() as sbx:
        cat = sbx.commands.run("cat", background=True, stdin=True)
        sbx.commands.send_stdin(cat.pid, "hello\n")
        sbx.commands.close_stdin(cat.pid)
        echoed = cat.wait().stdout
        sleeper = sbx.commands.run("sleep 300", background=True)
        listed = [p.pid for p in sbx.commands.list()]
        killed = sbx.commands.kill(sleeper.pid)
        try:
            sleeper.wait()
            exit_code = 0
        except CommandExitException as exc:
            exit_code = exc.exit_code
        trap = sbx.commands.run("trap 'echo term; exit 7' TERM; echo ready; "
                                "while true; do sleep 0.1; done", background=True)
        output: list[str] = []
        for _stdout, _stderr, _ in trap:
            output.append(_stdout or "")
            if "ready" in "".join(output):
                break
        sbx.commands.kill(trap.pid)  # SIGKILL: the trap cannot run
        return {"echoed": echoed, "pid_listed": sleeper.pid in listed, "killed": killed,
                "exit_code": exit_code, "kill_again": sbx.commands.kill(sleeper.pid),
                "ready": "ready" in "".join(output)}


def files_and_control() -> Result:
    with Sandbox.create(metadata={"who": "test"}, envs={"GREETING": "hej"}) as sbx:
        made = sbx.files.make_dir("/home/user/d/e")
        made_again = sbx.files.make_dir("d/e")
        sbx.files.write("d/e/f.txt", "x")
        entry = sbx.files.get_info("d/e/f.txt")
        listed = sorted(e.path for e in sbx.files.list("d", depth=2))
        sbx.files.rename("d/e/f.txt", "/home/user/g.txt")
        sbx.files.remove("d")
        many = sbx.files.write_files([{"path": "m/1.txt", "data": "one"},
                                      {"path": "/home/user/m/2.txt", "data": b"two"}])
        streamed = sbx.files.write("s.bin", io.BytesIO(b"\x00\x01"))  # octet-stream
        pty = raised(lambda: sbx.pty.create(PtySize(rows=24, cols=80)))
        sbx.set_timeout(120)
        info = sbx.get_info()
        again = Sandbox.connect(sbx.sandbox_id)
        return {"made": made, "made_again": made_again, "entry_path": entry.path,
                "entry_type": entry.type.value if entry.type else None, "listed": listed,
                "d_exists": sbx.files.exists("d"), "g": sbx.files.read("g.txt"),
                "env": sbx.commands.run("echo $GREETING").stdout.strip(),
                "code_env": again.run_code("import os; os.environ['GREETING']").text,
                "metadata": info.metadata, "seconds_left":
                    (info.end_at - info.started_at).total_seconds(),
                "pwd": sbx.commands.run("pwd").stdout.strip(),
                "many": sorted(w.path for w in many),
                "many_read": [sbx.files.read("m/1.txt"), sbx.files.read("m/2.txt")],
                "streamed": [streamed.path, list(sbx.files.read("s.bin", format="bytes"))],
                "pty": pty}


SCENARIOS: dict[str, Callable[..., Result]] = {
    f.__name__: f for f in (snippet, async_snippet, rich, errors, kill, create, other_tenant,
                            cleanup, stdin_and_signals, files_and_control)}

if __name__ == "__main__":
    print("RESULT " + json.dumps(SCENARIOS[sys.argv[1]](*sys.argv[2:])), flush=True)
