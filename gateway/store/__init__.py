"""SQLite store: connection (db.py), migrations (migrate.py), records and devices."""
