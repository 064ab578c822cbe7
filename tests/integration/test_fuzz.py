"""Fuzz the gateway's own OpenAPI document with Schemathesis: no 5xx, no schema violations.

Runs ``st run`` (every check: server errors, status codes, content types, response schemas,
positive and negative data, stateful use-after-free and availability) against a gateway of its
own, so the sandboxes the fuzzer claims cannot starve the shared fixture. The exceptions, each
with its reason, are in ``schemathesis.toml`` next to this file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandcell_gateway.testing import GatewayProcess

pytestmark = pytest.mark.docker

SETTINGS = Path(__file__).with_name("schemathesis.toml")
# Idle culling (5 s) reclaims the sandboxes the fuzzer claims and never deletes (any TTL it asks
# for is culled anyway), so the pool never runs dry and no claim waits into a 503.
FUZZ_CONFIG = """
[gateway]
gateway_id = "{gateway_id}"
sandbox_ttl = 60
idle_timeout = 5

[templates.python]
min_ready = 2
max_total = 6

[plugins]
min_ready = 1
max_total = 2
"""


def test_openapi_document_survives_fuzzing(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path, FUZZ_CONFIG) as gateway:
        gateway.wait_ready()
        run = subprocess.run(
            [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()",
             "--config-file", str(SETTINGS), "run", f"{gateway.url}/api/v1/openapi.json",
             "--header", f"Authorization: Bearer {gateway.token}", "--checks", "all",
             "--no-color", "--report", "junit", "--report-dir", str(tmp_path / "report")],
            # in tmp_path: schemathesis keeps a cache of failing cases in its working directory,
            # which must neither land in the repository nor carry over into the next run
            capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{gateway.log()[-5000:]}"
        assert "passed" in run.stdout and "failed" not in run.stdout
        assert gateway.process is not None and gateway.process.poll() is None
        assert gateway.health()["status"] == "ok"
    assert gateway.containers() == [], gateway.log()
