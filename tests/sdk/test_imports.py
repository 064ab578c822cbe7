"""``import sandcell`` stays light: httpx and the standard library only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import SDK_DIR

HEAVY = ("tornado", "docker", "zmq", "jupyter_client", "jupyter_core", "IPython", "sandcell_gateway")

PROBE = """
import json, sys
import sandcell
print(json.dumps(sorted(sys.modules)))
"""


def test_import_sandcell_does_not_import_the_gateway_s_dependencies() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SDK_DIR), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    modules = json.loads(completed.stdout)
    assert "sandcell" in modules and "httpx" in modules
    imported_heavy = [name for name in modules if name.split(".")[0] in HEAVY]
    assert imported_heavy == []
