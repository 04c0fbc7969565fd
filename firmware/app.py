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

import firmware
from firmware.journal import JournalFull

try:
    from micropython import const
except ImportError:          # CPython
    def const(x):
        return x

# Commands the app applies, and those it applies in safe mode.
_COMMANDS = const(("invite", "cancel", "paired", "unpaired", "time", "config", "reboot"))
_SAFE_COMMANDS = const(("paired", "unpaired", "time", "config", "reboot"))


class App:
    def __init__(self, hal, cfg, journal, clock, clear_failed_boots, feedback, safe=False, now=0):
        # Once per boot: the body is firmware/appcmd.py's init (rare work, unloaded after), which
        # sets every attribute, then loads the stored pairing.
        firmware.rare("appcmd", "init", self, (hal, cfg, journal, clock, clear_failed_boots, feedback,
                                               safe), now)

    def _label(self):
        if self.clerk:
            return self.win + "\n" + self.clerk
        return self.win

    def paired(self):
        return self.win != ""

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
        # pairing, config and reboot: firmware/appcmd.py, loaded for the call (firmware.rare)
        return firmware.rare("appcmd", t, self, msg, now)

    def _drop(self, why):
        self.dropped_cmds += 1
        self.hal.log("app: command " + why)
        return False
