"""Kernelspecs that name the ``sandcell`` provisioner: one per template, ``sandcell-<template>``.

The templates come from the gateway (``GET /api/kernelspecs``, found as ``sandcell.Client()``
finds it) or from ``--template``; with neither, ``python`` alone.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .._config import DEFAULT_TIMEOUT, ClientConfig
from .._core import default_headers

__all__ = ["TemplateSpec", "gateway_templates", "install_kernelspecs", "kernelspec"]

PREFIX = "sandcell-"


@dataclass(frozen=True)
class TemplateSpec:
    """What a kernelspec says about a template.

    >>> TemplateSpec.default("python")
    TemplateSpec(name='python', display_name='Python 3 (Sandcell)', language='python')
    """

    name: str
    display_name: str
    language: str

    @classmethod
    def default(cls, name: str) -> TemplateSpec:
        display = "Python 3 (Sandcell)" if name == "python" else f"Python 3 (Sandcell {name})"
        return cls(name, display, "python")

    @property
    def kernel_name(self) -> str:
        return PREFIX + self.name


def kernelspec(template: TemplateSpec) -> dict[str, Any]:
    """The ``kernel.json`` of a template's kernelspec.

    ``argv`` is never run by the provisioner; it is there so a jupyter_client without the
    ``sandcell`` provisioner fails loudly instead of starting a local kernel.

    >>> kernelspec(TemplateSpec.default("python"))["metadata"]["kernel_provisioner"]
    {'provisioner_name': 'sandcell', 'config': {'template': 'python'}}
    """
    return {"argv": [sys.executable, "-m", "sandcell.jupyter", "no-provisioner", "{connection_file}"],
            "display_name": template.display_name, "language": template.language,
            "interrupt_mode": "signal", "env": {},
            "metadata": {"kernel_provisioner": {"provisioner_name": "sandcell",
                                                "config": {"template": template.name}},
                         "debugger": False}}


def gateway_templates(config: ClientConfig | None = None) -> list[TemplateSpec]:
    """The gateway's templates, from its ``/api/kernelspecs`` (``httpx.HTTPError`` if it is down)."""
    config = config or ClientConfig.resolve()
    response = httpx.get(f"{config.base_url}/api/kernelspecs", headers=default_headers(config.token),
                         timeout=DEFAULT_TIMEOUT.as_httpx())
    response.raise_for_status()
    specs = response.json().get("kernelspecs", {})
    return [TemplateSpec(name, str(model["spec"].get("display_name") or name),
                         str(model["spec"].get("language") or "python"))
            for name, model in sorted(specs.items())]


def install_kernelspecs(templates: list[TemplateSpec], *, user: bool = False,
                        prefix: str | None = None) -> list[str]:
    """Write one kernelspec per template (replacing older ones); the directories written."""
    from jupyter_client.kernelspec import KernelSpecManager

    manager, written = KernelSpecManager(), []
    for template in templates:
        with tempfile.TemporaryDirectory() as source:
            Path(source, "kernel.json").write_text(json.dumps(kernelspec(template), indent=1))
            written.append(manager.install_kernel_spec(source, template.kernel_name,
                                                       user=user, prefix=prefix))
    return written
