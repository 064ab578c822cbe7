"""The sandbox image as it was before issue 13's leaner kernel, built for same-run baselines.

``sandcell/python:baseline`` is the python recipe of ``REVISION`` (the commit before the
recipe dropped debugpy and setuptools, imported less of jupyter_client and compiled
unchecked-hash bytecode), built by the project's own image builder from ``git archive``. A
bench that compares "today" with "before" runs both images in the same run, on the same
machine. It is built once, then reused while its recipe label matches.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import docker

from sandcell_gateway.imagebuild import ImageBuilder, load_recipes

REVISION = "a8e7be82ac4d9b45672340a80592c67eb6af8fb6"
TAG = "sandcell/python:baseline"
ROOT = Path(__file__).resolve().parents[1]


def ensure_baseline_image() -> str:
    """Build ``TAG`` if it is missing or stale; its tag."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", REVISION, "sandbox_images"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        recipes = Path(tmp) / "sandbox_images"
        manifest = recipes / "python" / "image.json"
        manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"tag": TAG}))
        client = docker.from_env()
        try:
            ImageBuilder(client, load_recipes(recipes)).build(["python"])
        finally:
            client.close()
    return TAG
