"""Deployment of a hall or district server: `scripts/install.sh` and the files it writes
(gateway/deploy/install.py, templates in gateway/deploy/templates/)."""
