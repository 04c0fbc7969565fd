"""The QR channel (评价二维码, docs/qr.md): plates, receipt links, the public rating page.

`service` is the domain service; `page` the public page (imported only with [qr]); `plate` the
plate renderer; `tokens` the signed tokens and key file; `points` a window's QR point."""
