"""Uplink to the provincial 好差评 platform: adapters, client, push runs, scheduler,
reconciliation. See docs/uplink.md."""
