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

from gateway.config import Config, ConfigError, load_config
from gateway.service import configure_logging, serve
from gateway.store.errors import StoreError

log = logging.getLogger("gateway")


async def _run(cfg: Config) -> int:
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
    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        print(f"gateway: config error: {e}", file=sys.stderr)
        return 2
    settings = cfg.sections.get("log")
    # The format is set before anything is logged: every line of a run has the same one.
    configure_logging(log_level or (settings.level if settings else "INFO"),
                      log_format or (settings.format if settings else "text"))
    try:
        return asyncio.run(_run(cfg))
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
