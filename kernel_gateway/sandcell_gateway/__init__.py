"""Sandcell gateway: warm pools of hardened Jupyter kernel containers behind a Tornado API."""

__version__ = "0.1.0"
