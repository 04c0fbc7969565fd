"""QR channel: printable plates (rendering only; tokens and routes live elsewhere)."""
