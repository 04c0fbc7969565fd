"""Uplink to the provincial 好差评 platform: adapters, client, push runs, scheduler,
reconciliation. See docs/uplink.md. gateway.service runs the scheduler (run_scheduler) on
the leader instance when [uplink] is configured and enabled."""
