"""The hall gateway: MQTT ingest with durable acks, SQLite store, device health, time.

Entry point: `python -m gateway serve --config gateway.toml` (see docs/gateway.md).
"""

__version__ = "0.1.0"
