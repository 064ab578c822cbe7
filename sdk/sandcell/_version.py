"""The version of Sandcell: of the SDK (sent in the User-Agent header), of the gateway and of
the ``sandcell`` command. This file is the one place it is written: both distributions'
metadata read it (sdk/pyproject.toml, pyproject.toml), and the gateway's
``sandcell_gateway/_version.py`` is a symlink to it (a copy in the gateway's wheel)."""

__version__ = "0.1.0"
