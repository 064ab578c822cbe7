"""Sandcell's objects in E2B's JSON shapes, and E2B's paths in Sandcell's: pure functions.

E2B's SDK assumes a user ``user`` with home ``/home/user``; a Sandcell sandbox runs as
``sandbox`` (uid 1000) in the workspace ``/home/sandbox``. Paths are translated both ways, so
``/home/user/a.txt``, ``~/a.txt`` and ``a.txt`` all name the workspace's ``a.txt``.

>>> sandcell_path("/home/user/data/a.csv"), sandcell_path("~"), sandcell_path("/tmp/x")
('data/a.csv', '.', '/tmp/x')
>>> e2b_path("data/a.csv"), e2b_path("."), e2b_path("/tmp/x")
('/home/user/data/a.csv', '/home/user', '/tmp/x')
"""

from __future__ import annotations

import stat
from typing import Any

from ..config import TemplateConfig
from ..pool_sizing import parse_size
from ..sandbox import Sandbox
from ..wire import iso_time

HOME = "/home/user"
# Reported to the SDK, which switches features on by it: 0.5.7 has the octet-stream upload
# and the default user; below 0.6.2, so the SDK itself refuses file metadata (not kept here).
ENVD_VERSION = "0.5.7"
CLIENT_ID = "sandcell"


def sandcell_path(path: str) -> str:
    """An E2B path (absolute in ``/home/user``, ``~``-relative, or home-relative) as the agent
    takes it: workspace-relative, or absolute elsewhere (the agent judges what it may reach)."""
    for prefix in (HOME, "~"):
        if path == prefix:
            return "."
        if path.startswith(prefix + "/"):
            return path[len(prefix) + 1:] or "."
    return path or "."


def e2b_path(path: str) -> str:
    """The agent's path (workspace-relative inside it) as E2B shows it: absolute."""
    if path.startswith("/"):
        return path
    return HOME if path in ("", ".") else f"{HOME}/{path}"


def created(sandbox: Sandbox, token: str) -> dict[str, Any]:
    """``Sandbox``: the answer to create and connect. ``token`` becomes the envd access token
    and the traffic token the SDK sends on every sandbox request (the caller's own API key)."""
    return {"templateID": sandbox.template, "sandboxID": sandbox.id, "clientID": CLIENT_ID,
            "envdVersion": ENVD_VERSION, "envdAccessToken": token,
            "trafficAccessToken": token, "domain": None}


def listed(sandbox: Sandbox, template: TemplateConfig) -> dict[str, Any]:
    """``ListedSandbox`` (also the base of ``SandboxDetail``)."""
    limits = template.limits
    return {"templateID": sandbox.template, "sandboxID": sandbox.id, "clientID": CLIENT_ID,
            "startedAt": iso_time(sandbox.created_at), "endAt": iso_time(sandbox.expires_at),
            "cpuCount": max(1, int(limits.cpus)),
            "memoryMB": parse_size(limits.memory) >> 20,
            "diskSizeMB": parse_size(limits.workspace_size) >> 20,
            "state": "running", "envdVersion": ENVD_VERSION,
            "metadata": dict(sandbox.metadata)}


def detail(sandbox: Sandbox, template: TemplateConfig, token: str) -> dict[str, Any]:
    """``SandboxDetail``: the answer to get."""
    return {**listed(sandbox, template), "envdAccessToken": token, "domain": None}


_FILE_TYPES = {"file": "FILE_TYPE_FILE", "dir": "FILE_TYPE_DIRECTORY",
               "symlink": "FILE_TYPE_SYMLINK"}


def entry_info(info: dict[str, Any]) -> dict[str, Any]:
    """envd's ``EntryInfo`` (proto JSON) from the gateway's file info (files.file_info)."""
    mode = int(info.get("mode") or 0)
    return {"name": info["name"], "type": _FILE_TYPES.get(info["type"], "FILE_TYPE_UNSPECIFIED"),
            "path": e2b_path(info["path"]), "size": str(info["size"]),
            "mode": mode & 0o7777, "permissions": stat.filemode(mode) if mode else "",
            "owner": "user", "group": "user",
            "modifiedTime": iso_time(float(info.get("modified") or 0.0), digits=9)}


def write_info(info: dict[str, Any]) -> dict[str, Any]:
    """One entry of the ``/files`` upload answer."""
    return {"name": info["name"], "type": info["type"], "path": e2b_path(info["path"])}
