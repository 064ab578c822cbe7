"""Run the gateway: start the pools, serve HTTP, and clean up every container on the way out."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

import tornado.httpserver
import tornado.netutil

from .app import make_app
from .backend import DockerBackend
from .base import Deps
from .command_service import CommandService
from .config import GatewayConfig
from .cors import CorsPolicy
from .files import FileService
from .jupyter_service import JupyterService
from .plugins.service import PluginService
from .runtime import gateway_token, remove_runtime_file, write_runtime_file
from .service import SandboxService
from .store import HistoryStore
from .tenants import Tenants

log = logging.getLogger("sandcell")


def run(config: GatewayConfig) -> None:
    """Serve on uvloop when it is installed (a quarter off the 1+1 round trip, measured with
    bench/), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))


async def serve(config: GatewayConfig) -> None:
    """Serve until SIGINT/SIGTERM; then destroy every sandbox this gateway started."""
    token, generated = gateway_token()
    tenants = Tenants(config.tenants, token)  # ConfigError before anything starts
    runtime = DockerBackend(config)
    store = HistoryStore(config.store_path)  # sandboxes' history and Jupyter sessions
    service = SandboxService(config, runtime, store)
    await service.start()
    jupyter = JupyterService(service, store)
    await jupyter.load_sessions()
    plugins = PluginService(config, runtime) if config.plugins.enabled else None
    if plugins is not None:
        await plugins.start()
        runtime.when_reachable_again(plugins.retry_pools)
        runtime.watch_exits(plugins.on_container_exit)
    sockets = tornado.netutil.bind_sockets(config.port, config.host, family=socket.AF_INET)
    port = sockets[0].getsockname()[1]
    server = tornado.httpserver.HTTPServer(
        make_app(Deps(service, tenants, jupyter, config.max_body_size, plugins=plugins,
                      websocket_max_message_size=config.websocket_max_message_size,
                      cors=CorsPolicy(config.cors), e2b=config.e2b,
                      files=FileService(service, config.max_file_size),
                      commands=CommandService(service, config.max_output_bytes))),
        max_body_size=config.max_body_size * 4, idle_connection_timeout=300)
    server.add_sockets(sockets)
    url = f"http://{config.host}:{port}"
    runtime_file = write_runtime_file(config.runtime_dir, url, token, port)
    log.info("Sandcell gateway listening on %s (runtime file %s)", url, runtime_file)
    if generated:
        print(f"Sandcell token: {token}  (set SANDCELL_TOKEN to choose one)", flush=True)
    print(f"Sandcell gateway ready at {url}", flush=True)
    try:
        await _until_signalled()
    finally:
        log.info("shutting down: removing this gateway's containers")
        server.stop()
        remove_runtime_file(runtime_file)
        if plugins is not None:
            await plugins.close()
        await service.close()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
