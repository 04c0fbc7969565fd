"""The evaluator's state machine: synchronous, driven by presses, ticks, commands, link events.

States (state_name()):  unpaired -> idle -> invited -> thanks -> idle ...,  safe (no rating).
Being offline is orthogonal: presses are journaled and answered the same way.

    press in       becomes record                    then
    invited        rated  (grade, invitation)        thanks (cooldown_s)
    thanks         extra  (grade, that invitation)   thanks (cooldown unchanged)
    idle           walkup (grade) if walkup=accept   thanks
                   nothing, counted, if ignore       idle
    unpaired       unpaired (grade)                  unpaired
    safe           nothing, counted                  safe
    countdown runs out: unrated (invitation), then idle/unpaired.

Every method takes the uptime `now` (ms) so tests drive it with virtual time; side effects go
through the HAL (feedback) and the journal only. Feedback comes before the flash write.
"""

from firmware.journal import JournalFull
from firmware.pairing import Pairing

try:
    from micropython import const
except ImportError:          # CPython
    def const(x):
        return x

# Commands the app applies, and those it applies in safe mode.
_COMMANDS = const(("invite", "cancel", "paired", "unpaired", "time", "config", "reboot"))
_SAFE_COMMANDS = const(("paired", "unpaired", "time", "config", "reboot"))
_REBOOT_DELAY_MS = const(500)          # let the link ack the reboot command before going down
_DONE = const(8)            # finished invitation ids remembered, so a re-sent invite cannot rate twice


class App:
    def __init__(self, hal, cfg, journal, clock, clear_failed_boots, feedback, safe=False, now=0):
        self.hal = hal
        self.cfg = cfg
        self.journal = journal
        self.clock = clock
        self._clear_failed_boots = clear_failed_boots   # Firmware.clear_failed_boots (reboot command)
        self.feedback = feedback
        self.safe = safe
        self.pairing = Pairing(hal).load()
        self.state = "booting"
        self.online = False
        self.inv = ""               # the open invitation while invited
        self.deadline = 0
        self.thanks_until = 0
        self.last_inv = ""          # invitation the current cooldown follows ("" after a walk-up)
        self._done = [""] * _DONE   # finished invitations, oldest first
        self.counts = {"rated": 0, "walkup": 0, "extra": 0, "unrated": 0, "unpaired": 0}
        self.ignored = 0            # presses that made no record (walkup=ignore, safe mode)
        self.lost = 0               # presses the journal could not store (full / flash error)
        self.dropped_cmds = 0       # commands that did not apply (duplicate invite, stale cancel, ...)
        self.reboot_at = 0
        self.on_record = None       # set by main: the link's kick()
        feedback.set_label(self.pairing.label(), now)
        self._rest(now)

    def paired(self):
        return self.pairing.win != ""

    # -- state helpers ----------------------------------------------------------------------
    def state_name(self):
        return self.state

    def _set(self, state, now, deadline=0):
        self.state = state
        self.feedback.set_mode(state, now, deadline)

    def _rest(self, now):
        """The state to be in when nothing is going on."""
        if self.safe:
            self._set("safe", now)
        elif self.paired():
            self._set("idle", now)
        else:
            self._set("unpaired", now)

    def _finish_invitation(self):
        done = self._done
        done.pop(0)                # no allocation: the list keeps its _DONE slots
        done.append(self.inv)
        self.inv = ""

    def _record(self, kind, grade, inv, now):
        try:
            rid = self.journal.append(kind, grade, inv, self.clock.wall(now), now)
        except (JournalFull, OSError) as e:
            self.lost += 1
            self.feedback.press("error", now)
            self.hal.log("app: press not stored (%s): %s %s" % (e, kind, grade))
            return None
        self.counts[kind] += 1
        if self.on_record is not None:
            self.on_record()
        return rid

    # -- inputs -----------------------------------------------------------------------------
    def on_button(self, index, now):
        """A debounced press of button index (0 = leftmost). Returns the record's (rb, rs) or None."""
        buttons = self.cfg.buttons
        if index < 0 or index >= len(buttons):
            self.ignored += 1
            return None
        grade = buttons[index]
        st = self.state
        if st == "invited":
            self.feedback.press("ok", now)
            inv = self.inv
            self._finish_invitation()
            self.last_inv = inv
            self.thanks_until = now + self.cfg.cooldown_s * 1000
            self._set("thanks", now)
            return self._record("rated", grade, inv, now)
        if st == "thanks":
            self.feedback.press("extra", now)
            return self._record("extra", grade, self.last_inv, now)
        if st == "idle":
            if self.cfg.walkup == "accept":
                self.feedback.press("ok", now)
                self.last_inv = ""
                self.thanks_until = now + self.cfg.cooldown_s * 1000
                self._set("thanks", now)
                return self._record("walkup", grade, "", now)
            self.feedback.press("refused", now)
            self.ignored += 1
            self.hal.log("app: walk-up press ignored (walkup=ignore): %s" % grade)
            return None
        if st == "unpaired":
            self.feedback.press("refused", now)
            return self._record("unpaired", grade, "", now)
        self.feedback.press("refused", now)      # safe mode (or still booting)
        self.ignored += 1
        self.hal.log("app: press ignored in state %s" % st)
        return None

    def tick(self, now):
        st = self.state
        if st == "invited" and now >= self.deadline:
            inv = self.inv
            self._finish_invitation()
            self._record("unrated", "", inv, now)
            self._rest(now)
        elif st == "thanks" and now >= self.thanks_until:
            self._rest(now)
        self.feedback.tick(now)

    def on_link(self, connected, now=None):
        if now is None:
            now = self.clock.uptime()
        self.online = connected
        self.feedback.set_offline(not connected, now)

    def reboot_due(self, now):
        return self.reboot_at != 0 and now >= self.reboot_at

    # -- commands (already verified by the link; msg is the decoded dict) --------------------
    def on_command(self, msg, now=None):
        """Apply one gateway command. Returns True if it changed something, False if dropped."""
        if now is None:
            now = self.clock.uptime()
        t = msg.get("t")
        if t not in _COMMANDS or (self.safe and t not in _SAFE_COMMANDS):
            return self._drop("%s not applied in state %s" % (t, self.state))
        if t == "invite":
            inv = msg["i"]
            if inv == self.inv or inv in self._done:
                return self._drop("invite %s already open or finished" % inv)
            if self.state == "invited":       # the window moved on: the open case stays unrated
                old = self.inv
                self._finish_invitation()
                self._record("unrated", "", old, now)
            self.inv = inv
            self.deadline = now + msg.get("cd", self.cfg.countdown_s) * 1000
            self._set("invited", now, self.deadline)
            self.feedback.press("prompt", now)
            return True
        if t == "cancel":
            if self.state != "invited" or msg["i"] != self.inv:
                return self._drop("cancel %s: no such open invitation" % msg["i"])
            self._finish_invitation()
            self._rest(now)
            return True
        if t == "time":
            self.clock.set_wall(msg["w"], msg["u"], now)
            return True
        if t == "paired":
            if self.pairing.set(msg["win"], msg.get("clerk", "")):
                self.feedback.set_label(self.pairing.label(), now)
            if self.state == "unpaired":
                self._rest(now)
            return True
        if t == "unpaired":
            if self.state == "invited":
                inv = self.inv
                self._finish_invitation()
                self._record("unrated", "", inv, now)
            if self.pairing.set("", ""):
                self.feedback.set_label("", now)
            if self.state != "thanks":
                self._rest(now)
            return True
        if t == "config":
            applied, rejected = self.cfg.apply(msg["cfg"])
            for k in rejected:
                self.hal.log("app: config %s rejected: %s" % (k, rejected[k]))
            if applied:
                self.cfg.save(self.hal)
            return bool(applied)
        # reboot
        self._clear_failed_boots()        # an authenticated reboot also leaves safe mode
        self.reboot_at = now + _REBOOT_DELAY_MS
        self.hal.log("app: reboot requested: %s" % msg.get("why", ""))
        return True

    def _drop(self, why):
        self.dropped_cmds += 1
        self.hal.log("app: command " + why)
        return False
