"""Fuzz the gateway's own OpenAPI document with Schemathesis: no 5xx, no schema violations.

Runs ``st run`` (every check but response time: server errors, status codes, content types, response
schemas, positive and negative data, stateful use-after-free and availability) against a gateway of its
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
# No idle culling: a sandbox the fuzzer created must still be there when its next call comes,
# however slow the machine (a 5 s cull once made the availability check fail under load). The
# fuzzer holds a handful of sandboxes at a time (it deletes most, and any TTL it asks for is
# short), so a fixed pool of 16 never runs dry; a fixed size also keeps a burst of claims from
# starting a dozen containers at once. The agent is on (the default), so the file routes are
# fuzzed against a sandbox that serves them, not only against its refusal (400 no_agent).
FUZZ_CONFIG = """
[gateway]
gateway_id = "{gateway_id}"
sandbox_ttl = 60
idle_timeout = 0

[templates.python]
min_ready = 2
max_total = 16
adaptive = false

[plugins]
min_ready = 1
max_total = 2
"""

# Every check but max_response_time (which `all` includes): durations are the bench's (bench/);
# a claim on a loaded 2-core machine may wait seconds for a container start, past its fixed 10 s.
CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance",
          "negative_data_rejection", "positive_data_acceptance", "missing_required_header",
          "unsupported_method", "allow_header_conformance", "use_after_free",
          "ensure_resource_availability", "ignored_auth", "object_level_authorization"]


def test_openapi_document_survives_fuzzing(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path, FUZZ_CONFIG) as gateway:
        gateway.wait_ready()
        run = subprocess.run(
            [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()",
             "--config-file", str(SETTINGS), "run", f"{gateway.url}/api/v1/openapi.json",
             "--header", f"Authorization: Bearer {gateway.token}", "--checks", ",".join(CHECKS),
             "--no-color", "--report", "junit", "--report-dir", str(tmp_path / "report")],
            # in tmp_path: schemathesis keeps a cache of failing cases in its working directory,
            # which must neither land in the repository nor carry over into the next run
            capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{gateway.log()[-5000:]}"
        assert "passed" in run.stdout and "failed" not in run.stdout
        assert gateway.process is not None and gateway.process.poll() is None
        assert gateway.health()["status"] == "ok"
    assert gateway.containers() == [], gateway.log()
