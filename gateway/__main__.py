"""`python -m gateway serve --config FILE` (also reachable as `hcp-gateway serve` via gateway.cli).

Kept free of click so the service starts even where only the core is installed; errors in
the config or the store end in one clear line and exit code 2 (config) or 1 (runtime).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from gateway.config import ConfigError, load_config
from gateway.service import configure_logging, serve
from gateway.store.errors import StoreError

log = logging.getLogger("gateway")


async def _run(config_path: str) -> int:
    cfg = load_config(config_path)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopping = False

    def stop() -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await serve(cfg)
    except asyncio.CancelledError:
        if not stopping:
            raise
    return 0


def serve_main(config_path: str, log_level: str = "INFO") -> int:
    configure_logging(log_level)
    try:
        return asyncio.run(_run(config_path))
    except ConfigError as e:
        print(f"gateway: config error: {e}", file=sys.stderr)
        return 2
    except StoreError as e:
        print(f"gateway: store error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"gateway: {e}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="hall gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway service")
    s.add_argument("--config", required=True, help="gateway TOML config file")
    s.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve_main(args.config, args.log_level)
    return 2


if __name__ == "__main__":
    sys.exit(main())
