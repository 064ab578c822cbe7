"""Kernel connections for the sandbox service's unit tests, which run no kernel.

Example::

    sandbox = Sandbox(handle, unanswered_kernel())
"""

from __future__ import annotations

from sandcell_gateway.kernel import KernelConnection, connection_info


def unanswered_kernel() -> KernelConnection:
    """A real connection whose ipc sockets nobody binds: the service can fail it (a death),
    close it (a destroy) and read its state, while a cell would wait for a kernel that never
    answers. Its owner closes it, as the service does when it destroys the sandbox."""
    return KernelConnection(connection_info("/nonexistent/k", "unused-key"))
