"""Sandcell gateway: warm pools of hardened Jupyter kernel containers behind a Tornado API."""

from ._version import __version__

__all__ = ["__version__"]
