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


async def _run(config_path: str, log_level: str | None, log_format: str | None) -> int:
    cfg = load_config(config_path)
    settings = cfg.sections.get("log")
    if settings is not None and (log_level is None or log_format is None):
        # [log] of the config, unless the command line said otherwise.
        configure_logging(log_level or settings.level, log_format or settings.format)
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


def serve_main(config_path: str, log_level: str | None = None, log_format: str | None = None) -> int:
    """log_level / log_format: None = the config's [log] (default INFO, text)."""
    configure_logging(log_level or "INFO", log_format or "text")
    try:
        return asyncio.run(_run(config_path, log_level, log_format))
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
    s.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="default: [log] level of the config, else INFO")
    s.add_argument("--log-format", default=None, choices=["text", "json"],
                   help="log lines as text or one JSON object each (default: [log] format, else text)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve_main(args.config, args.log_level, args.log_format)
    return 2


if __name__ == "__main__":
    sys.exit(main())
