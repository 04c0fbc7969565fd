"""The app's rare work: its construction (init, once per boot), pairing persistence and the
paired, unpaired, config and reboot commands.

App imports this module for the call and unloads it right after (firmware.rare), so
its bytecode is not in the device's RAM between a few commands a day. Each function takes the
App, the verified command dict and the uptime, and returns True if something changed.
"""

import json

from firmware import fsutil

try:
    from micropython import const
except ImportError:          # CPython
    def const(x):
        return x

_PAIR_FILE = const("data/pair.json")   # the window and clerk this device is bound to
_REBOOT_DELAY_MS = const(500)          # let the link ack the reboot command before going down
_DONE = const(8)            # finished invitation ids remembered, so a re-sent invite cannot rate twice


def init(app, args, now):
    """App.__init__ (once per boot): its inputs, state and counters, then the stored pairing."""
    app.hal, app.cfg, app.journal, app.clock, app._clear_failed_boots, app.feedback, app.safe = args
    # app._clear_failed_boots is Firmware.clear_failed_boots (the reboot command)
    app.state = "booting"
    app.online = False
    app.inv = ""               # the open invitation while invited
    app.deadline = 0
    app.thanks_until = 0
    app.last_inv = ""          # invitation the current cooldown follows ("" after a walk-up)
    app._done = [""] * _DONE   # finished invitations, oldest first
    app.win = ""
    app.clerk = ""
    app.counts = {"rated": 0, "walkup": 0, "extra": 0, "unrated": 0, "unpaired": 0}
    app.ignored = 0            # presses that made no record (walkup=ignore, safe mode)
    app.lost = 0               # presses the journal could not store (full / flash error)
    app.dropped_cmds = 0       # commands that did not apply (duplicate invite, stale cancel, ...)
    app.reboot_at = 0
    app.on_record = None       # set by main: the link's kick()
    load_pairing(app, None, now)
    app.feedback.set_label(app._label(), now)
    app._rest(now)
    return True


def load_pairing(app, msg, now):
    data = fsutil.read_atomic(app.hal.path(_PAIR_FILE))
    if data is None:
        return False
    try:
        p = json.loads(data)
        app.win = p.get("win", "")
        app.clerk = p.get("clerk", "")
    except (ValueError, AttributeError):
        app.hal.log("app: pairing file unreadable, starting unpaired")
    return True


def _save_pairing(app):
    body = json.dumps({"win": app.win, "clerk": app.clerk}).encode()
    fsutil.write_atomic(app.hal, app.hal.path(_PAIR_FILE), body)


def paired(app, msg, now):
    win = msg["win"]
    clerk = msg.get("clerk", "")
    if win != app.win or clerk != app.clerk:
        app.win = win
        app.clerk = clerk
        _save_pairing(app)
        app.feedback.set_label(app._label(), now)
    if app.state == "unpaired":
        app._rest(now)
    return True


def unpaired(app, msg, now):
    if app.state == "invited":
        inv = app.inv
        app._finish_invitation()
        app._record("unrated", "", inv, now)
    if app.win or app.clerk:
        app.win = ""
        app.clerk = ""
        _save_pairing(app)
        app.feedback.set_label("", now)
    if app.state != "thanks":
        app._rest(now)
    return True


def config(app, msg, now):
    applied, rejected = app.cfg.apply(msg["cfg"])
    for k in rejected:
        app.hal.log("app: config %s rejected: %s" % (k, rejected[k]))
    if applied:
        app.cfg.save(app.hal)
    return bool(applied)


def reboot(app, msg, now):
    app._clear_failed_boots()        # an authenticated reboot also leaves safe mode
    app.reboot_at = now + _REBOOT_DELAY_MS
    app.hal.log("app: reboot requested: %s" % msg.get("why", ""))
    return True
