"""``sandcell`` command line: ``serve`` the gateway, ``images`` build/list the sandbox images,
``tenants`` make the config lines of a tenant's token, ``kernelspec install`` the Jupyter
kernelspecs of the templates (the SDK's ``python -m sandcell.jupyter``, client-side), ``mcp``
serve the sandboxes to AI agents over the Model Context Protocol (the SDK's ``sandcell.mcp``)."""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys

from . import __version__
from .config import ConfigError, GatewayConfig, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sandcell", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sandcell {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the gateway (builds missing images first)")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one)")
    serve.add_argument("--config", help="TOML configuration file (see the README, 'Configuration')")
    serve.add_argument("--no-build", action="store_true", help="fail instead of building images")
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument("--log-format", choices=("text", "json"), default="text",
                       help="json: one object per line, with request id, tenant, sandbox, duration")
    sub.add_parser("images", help="build or list sandbox images", add_help=False)
    sub.add_parser("kernelspec", help="install Jupyter kernelspecs for the templates",
                   add_help=False)
    sub.add_parser("mcp", help="Model Context Protocol server for agents (stdio, or --http PORT)",
                   add_help=False)
    tenants = sub.add_parser("tenants", help="config lines for tenants' tokens")
    tenant_sub = tenants.add_subparsers(dest="tenants_command", required=True)
    tenant_sub.add_parser("hash-token", help="read a token on stdin, print its token_sha256 line")
    new = tenant_sub.add_parser("new-token",
                                help="print a fresh token and its [tenants.NAME] table")
    new.add_argument("name")
    return parser


def _tenants(args: argparse.Namespace) -> int:
    """The config file holds only hashes; these print them so no clear token is written there."""
    from .tenants import hash_token

    if args.tenants_command == "new-token":
        token = secrets.token_urlsafe(32)
        print(f"# {args.name}'s token (hand it over; the gateway keeps only its hash):\n"
              f"# {token}\n[tenants.{args.name}]\ntoken_sha256 = \"{hash_token(token)}\"")
        return 0
    token = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline()
    token = token.strip()
    if not token:
        print("sandcell: no token on stdin", file=sys.stderr)
        return 2
    print(f'token_sha256 = "{hash_token(token)}"')
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["images"]:
        from .imagebuild import main as images_main

        return images_main(argv[1:])
    if argv[:1] == ["kernelspec"]:
        from sandcell.jupyter.__main__ import main as jupyter_main

        return jupyter_main(argv, prog="sandcell")
    if argv[:1] == ["mcp"]:
        from sandcell.mcp import main as mcp_main

        return mcp_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "tenants":
        return _tenants(args)
    from .ops import logs

    logs.configure(args.log_level, args.log_format)
    try:
        config = load_config(args.config, host=args.host, port=args.port)
    except ConfigError as exc:
        print(f"sandcell: {exc}", file=sys.stderr)
        return 2
    if not args.no_build:
        from .imagebuild import ImageBuildError, ensure_images

        try:
            ensure_images(_images_needed(config))
        except ImageBuildError as exc:
            print(f"sandcell: cannot build the sandbox images: {exc}", file=sys.stderr)
            return 1
    from .server import run

    try:
        run(config)
    except ConfigError as exc:  # e.g. SANDCELL_TOKEN is also a tenant's token
        print(f"sandcell: {exc}", file=sys.stderr)
        return 2
    return 0


def _images_needed(config: GatewayConfig) -> list[str]:
    """Every image the gateway will start: templates' and, when enabled, plugins'."""
    images = {t.image for t in config.templates.values()}
    if config.plugins.enabled:
        from .plugins.registry import PluginRegistry

        images |= {m.image for m in PluginRegistry.discover(config.plugins).list()}
    return sorted(images)


if __name__ == "__main__":
    sys.exit(main())
