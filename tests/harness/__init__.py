"""Test helpers importable as ``harness`` (pytest puts tests/ on sys.path via tests/conftest.py)."""
