"""Serve one plugin over PPP (gRPC) on a UNIX socket: the process inside a worker container.

    python -m sandcell_plugin.host --plugin /plugin --socket /conn/ppp.sock

``--plugin`` is the plugin's directory (its ``plugin.json`` names the entrypoint). The
gateway proves the worker ready with ``Health`` and then calls ``Init`` and ``Invoke``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from ._proto import plugin_pb2 as pb
from ._proto import plugin_pb2_grpc as pb_grpc
from .kit import Event, Plugin, load_plugin, run_invocation

CHUNK_SIZE = 1 << 20  # outputs larger than this travel as ResultChunks
HEALTH_SERVING = pb.HealthResponse.Status.SERVING


class PluginServicer(pb_grpc.PluginWorkerServicer):
    """PPP for one :class:`Plugin`: thin, every invocation runs through ``run_invocation``."""

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin

    async def Init(self, request: pb.InitRequest, context: grpc.aio.ServicerContext[Any, Any]
                   ) -> pb.InitResponse:
        if request.plugin_name and request.plugin_name != self.plugin.name:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"this worker serves {self.plugin.name!r}, "
                                f"not {request.plugin_name!r}")
        runtime = f"{platform.python_implementation()} {platform.python_version()} grpcio {grpc.__version__}"
        return pb.InitResponse(plugin_name=self.plugin.name, plugin_version=self.plugin.version,
                               language="python", runtime=runtime)

    async def Health(self, request: pb.HealthRequest,
                     context: grpc.aio.ServicerContext[Any, Any]) -> pb.HealthResponse:
        return pb.HealthResponse(status=HEALTH_SERVING)

    async def Invoke(self, request: pb.InvokeRequest, context: grpc.aio.ServicerContext[Any, Any]
                     ) -> AsyncIterator[pb.InvokeEvent]:
        try:
            inputs = json.loads(request.input_json or "{}")
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"input_json is not JSON: {exc}")
        if not isinstance(inputs, dict):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "input_json must be an object")
        async for event in run_invocation(self.plugin, inputs, request.invocation_id):
            for message in to_messages(event):
                yield message


def to_messages(event: Event) -> list[pb.InvokeEvent]:
    """The PPP message(s) for one kit event; a large output becomes ResultChunks."""
    fields = event.fields
    if event.kind == "progress":
        return [pb.InvokeEvent(progress=pb.Progress(**fields))]
    if event.kind == "log":
        return [pb.InvokeEvent(log=pb.Log(**fields))]
    if event.kind == "failed":
        return [pb.InvokeEvent(failed=pb.Failed(**fields))]
    output = fields["output_json"].encode()
    if len(output) <= CHUNK_SIZE:
        return [pb.InvokeEvent(completed=pb.Completed(output_json=fields["output_json"]))]
    chunks = [pb.InvokeEvent(result_chunk=pb.ResultChunk(data=output[i:i + CHUNK_SIZE]))
              for i in range(0, len(output), CHUNK_SIZE)]
    return [*chunks, pb.InvokeEvent(completed=pb.Completed())]


async def start_server(plugin: Plugin, address: str) -> grpc.aio.Server:
    """Serve ``plugin`` at ``address`` (``unix:/path`` or ``[::]:0``); started on return."""
    server = grpc.aio.server()
    pb_grpc.add_PluginWorkerServicer_to_server(PluginServicer(plugin), server)
    server.add_insecure_port(address)
    await server.start()
    return server


def load_from_directory(plugin_dir: Path) -> Plugin:
    """The plugin whose ``plugin.json`` (``entrypoint``) lives in ``plugin_dir``."""
    manifest = json.loads((plugin_dir / "plugin.json").read_text())
    return load_plugin(manifest["entrypoint"], plugin_dir)


async def serve(plugin_dir: Path, socket: str) -> None:
    server = await start_server(load_from_directory(plugin_dir), f"unix:{socket}")
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandcell_plugin.host", description=__doc__)
    parser.add_argument("--plugin", type=Path, default=Path("/plugin"), help="plugin directory")
    parser.add_argument("--socket", default="/conn/ppp.sock", help="UNIX socket to serve on")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.plugin, args.socket))
    return 0


if __name__ == "__main__":
    sys.exit(main())
