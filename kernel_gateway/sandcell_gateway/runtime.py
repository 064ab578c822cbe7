"""The gateway's token and the runtime file through which local SDK clients find it."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path


def gateway_token() -> tuple[str, bool]:
    """``SANDCELL_TOKEN`` if set, else a fresh random token; and whether it was generated."""
    token = os.environ.get("SANDCELL_TOKEN", "")
    return (token, False) if token else (secrets.token_urlsafe(32), True)


def write_runtime_file(runtime_dir: Path, url: str, token: str, port: int) -> Path:
    """Announce the gateway like Jupyter does (``jpserver-<pid>.json``); readable by us only."""
    runtime_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    path = runtime_dir / f"gateway-{port}.json"
    info = {"url": url, "token": token, "pid": os.getpid(), "started_at": time.time()}
    # written under a name readers don't glob, then renamed: a reader sees all of it or nothing
    partial = runtime_dir / f".gateway-{port}.json.{os.getpid()}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle)
    os.replace(partial, path)
    return path


def remove_runtime_file(path: Path) -> None:
    """Remove the file if it is still ours (a newer gateway on the port may have replaced it)."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass
