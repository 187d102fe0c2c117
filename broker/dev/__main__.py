"""`python -m broker.dev`: the dev stack with its ports and run dir as options (for tests).

Developers use `make run` / `agent-broker dev`; this entry exists so a test can run a whole
stack on free ports in a temporary directory, beside a developer's own stack.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from broker.dev.layout import DevPorts
from broker.dev.runner import run_dev


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m broker.dev", description=__doc__)
    parser.add_argument("--repo-root", type=Path, default=Path.cwd(),
                        help="the checkout (policies/, deploy/); default: the current directory")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="state directory; default: <repo-root>/.run")
    parser.add_argument("--no-mcp", action="store_true", help="do not start the demo MCP server")
    defaults = DevPorts()
    for f in fields(DevPorts):
        parser.add_argument(f"--{f.name.replace('_', '-')}-port", dest=f.name, type=int,
                            default=getattr(defaults, f.name),
                            help=f"default {getattr(defaults, f.name)}")
    args = parser.parse_args(argv)
    try:
        ports = DevPorts(**{f.name: getattr(args, f.name) for f in fields(DevPorts)})
    except ValueError as exc:
        parser.error(str(exc))
    return run_dev(args.repo_root, with_mcp=not args.no_mcp, ports=ports, run_dir=args.run_dir)


if __name__ == "__main__":
    raise SystemExit(main())
