"""What the citizen sees and hears: LEDs, beeps and (when fitted) a small ASCII display.

The app sets a mode when its state changes and calls press() inside on_button, before any
flash or network work, so the light and beep come within the scan interval of the press.
tick() ends beeps, blinks, and redraws the countdown once a second (no string per tick).

    mode       red    green              display          meaning for the citizen
    booting    on     on                 Starting         wait
    unpaired   on     off                Not paired       this counter takes no ratings yet
    idle       off    off                <window>         no service to rate right now
    invited    off    blinks 1 Hz        Please rate NN   rate the service you just received
    thanks     off    on                 Thank you        your rating is stored
    safe       blinks 4 Hz  off          Service mode     out of order, call staff
An invitation starts with a short 1.5 kHz beep.
Press answers: ok = green + high beep (2 kHz, 120 ms); extra = short click (1 kHz, 40 ms),
the rating already given stands; refused = red flash + low beep (400 Hz, 250 ms), this press
is not a rating; error = red + long low beep (300 Hz, 800 ms), the device could not store it.
"""

try:
    from micropython import const
except ImportError:          # CPython
    def const(x):
        return x

_OK_HZ = const(2000)
_OK_MS = const(120)
_PROMPT_HZ = const(1500)
_PROMPT_MS = const(80)
_EXTRA_HZ = const(1000)
_EXTRA_MS = const(40)
_REFUSED_HZ = const(400)
_REFUSED_MS = const(250)
_ERROR_HZ = const(300)
_ERROR_MS = const(800)


class Feedback:
    def __init__(self, hal):
        self.hal = hal
        self.mode = "booting"
        self.deadline = 0
        self.offline = False
        self.label = ""            # window / clerk name shown when idle
        self._tone_until = 0
        self._flash_until = 0
        self._sec = -1
        self._text = None
        self.render(0)

    def set_mode(self, mode, now, deadline=0):
        self.mode = mode
        self.deadline = deadline
        self._sec = -1
        self.render(now)

    def set_label(self, label, now):
        self.label = label
        self._sec = -1
        self.render(now)

    def set_offline(self, offline, now):
        if offline != self.offline:
            self.offline = offline
            self._sec = -1
            self.render(now)

    def press(self, what, now):
        """Immediate answer to a press (ok|extra|refused|error) or an invitation (prompt)."""
        if what == "ok":
            self._beep(_OK_HZ, _OK_MS, now)
        elif what == "prompt":
            self._beep(_PROMPT_HZ, _PROMPT_MS, now)
        elif what == "extra":
            self._beep(_EXTRA_HZ, _EXTRA_MS, now)
        elif what == "refused":
            self._flash_until = now + _REFUSED_MS
            self._beep(_REFUSED_HZ, _REFUSED_MS, now)
        else:
            self._flash_until = now + _ERROR_MS
            self._beep(_ERROR_HZ, _ERROR_MS, now)
        self.render(now)

    def _beep(self, hz, ms, now):
        self.hal.tone(hz)
        self._tone_until = now + ms

    def tick(self, now):
        if self._tone_until and now >= self._tone_until:
            self.hal.tone(0)
            self._tone_until = 0
        self.render(now)

    def render(self, now):
        m = self.mode
        red = False
        green = False
        if m == "booting":
            red = green = True
        elif m == "unpaired":
            red = True
        elif m == "invited":
            green = (now // 500) % 2 == 0
        elif m == "thanks":
            green = True
        elif m == "safe":
            red = (now // 125) % 2 == 0
        if now < self._flash_until:
            red = True
            green = False
        self.hal.led(red, green)
        if self.hal.has_display:
            self._draw(now)

    def _draw(self, now):
        if self.mode == "invited":
            sec = max(0, (self.deadline - now + 999) // 1000)
            if sec == self._sec:
                return
            self._sec = sec
            text = "Please rate %d" % sec
        else:
            if self._sec == 0 and self._text is not None:
                return                     # unchanged since the last draw
            self._sec = 0
            m = self.mode
            if m == "idle":
                text = self.label
            elif m == "booting":
                text = "Starting"
            elif m == "unpaired":
                text = "Not paired"
            elif m == "thanks":
                text = "Thank you"
            elif m == "safe":
                text = "Service mode"
            else:
                text = ""
        if self.offline:
            text = text + "\n(offline)"
        if text != self._text:
            self._text = text
            self.hal.show(text)
