"""The sandbox agent: files and processes inside one sandbox container, over gRPC.

It runs beside the kernel (``sandcell-kernel`` starts both under tini, as uid 1000) and
serves ``proto/sandcell/v1/sandbox.proto`` on ``/conn/agent.sock``. It imports only the
standard library and grpcio: its start-up time is part of every sandbox's start.
"""
