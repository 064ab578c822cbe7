"""``python -m sandcell.jupyter kernelspec install [--user | --prefix P | --sys-prefix]``.

The same command as ``sandcell kernelspec install``, without the gateway's dependencies.
"""

from __future__ import annotations

import argparse
import sys

import httpx

from .._config import ClientConfig


def parser(prog: str = "python -m sandcell.jupyter") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Kernelspecs for Sandcell's templates.")
    sub = p.add_subparsers(dest="command", required=True)
    kernelspec = sub.add_parser("kernelspec", help="manage Sandcell kernelspecs")
    ks_sub = kernelspec.add_subparsers(dest="kernelspec_command", required=True)
    install = ks_sub.add_parser("install", help="one kernelspec sandcell-<template> per template")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for this user (the default)")
    where.add_argument("--prefix", help="under PREFIX/share/jupyter/kernels (e.g. a venv)")
    where.add_argument("--sys-prefix", action="store_true", help=f"under {sys.prefix}")
    install.add_argument("--template", action="append", metavar="NAME",
                         help="a template to install (repeatable); default: the gateway's templates")
    sub.add_parser("no-provisioner", add_help=False)
    return p


def install(args: argparse.Namespace) -> int:
    from ._kernelspec import TemplateSpec, gateway_templates, install_kernelspecs

    try:
        known = {t.name: t for t in gateway_templates()}
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        known = {}
        if not args.template:
            url = ClientConfig.resolve().base_url
            print(f"sandcell: no gateway answered at {url} ({exc}); installing sandcell-python only "
                  "(start the gateway or pass --template NAME for others)", file=sys.stderr)
    names = args.template or sorted(known) or ["python"]
    templates = [known.get(name) or TemplateSpec.default(name) for name in names]
    prefix = sys.prefix if args.sys_prefix else args.prefix
    for path in install_kernelspecs(templates, user=prefix is None, prefix=prefix):
        print(f"installed kernelspec {path.rsplit('/', 1)[-1]} in {path}")
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m sandcell.jupyter") -> int:
    args = parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "no-provisioner":
        print("sandcell: this kernelspec needs the 'sandcell' kernel provisioner: "
              "pip install 'sandcell[jupyter]' in the environment that runs Jupyter", file=sys.stderr)
        return 1
    return install(args)


if __name__ == "__main__":
    sys.exit(main())
