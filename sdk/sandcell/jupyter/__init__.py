"""Sandcell for every Jupyter client: a kernel provisioner and its kernelspecs.

Needs the ``jupyter`` extra (``pip install 'sandcell[jupyter]'``)::

    sandcell kernelspec install --sys-prefix      # or: python -m sandcell.jupyter kernelspec install
    pytest --nbval --nbval-kernel-name sandcell-python notebooks/

The provisioner is jupyter_client's entry point ``sandcell``
(:class:`~sandcell.jupyter._provisioner.SandcellProvisioner`); see docs/jupyter.md. Importing
this package imports nothing heavy: the provisioner loads jupyter_client when it is used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SandcellProvisioner"]


def __getattr__(name: str) -> Any:
    if name == "SandcellProvisioner":
        from ._provisioner import SandcellProvisioner

        return SandcellProvisioner
    raise AttributeError(name)
