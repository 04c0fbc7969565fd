"""ESP32 HAL: the only firmware file that touches machine, network and ntptime.

Buttons are active-low inputs with pull-ups; a falling-edge IRQ only sets a latch byte (no
allocation in the IRQ), the button scan does the rest. LEDs are plain outputs, the buzzer a
PWM, the display an SSD1306 at 0x3C when one answers on I2C and the ssd1306 driver is there.
"""

import asyncio
import gc
import time

import machine
import network

_EPOCH_SHIFT = 946684800 if time.gmtime(0)[0] == 2000 else 0   # ports with a 2000 epoch
_CAUSES = {machine.PWRON_RESET: "power-on", machine.HARD_RESET: "hard", machine.WDT_RESET: "wdt",
           machine.DEEPSLEEP_RESET: "deepsleep", machine.SOFT_RESET: "soft"}


class Esp32Net:
    def __init__(self, ssid, password):
        self.wlan = network.WLAN(network.STA_IF)
        self.ssid = ssid
        self.password = password

    def connect(self):
        if not self.wlan.active():
            self.wlan.active(True)
        if not self.wlan.isconnected():
            self.wlan.connect(self.ssid, self.password)

    def is_up(self):
        return self.wlan.isconnected()

    def rssi(self):
        try:
            return self.wlan.status("rssi") if self.wlan.isconnected() else -127
        except Exception:
            return -127

    async def open(self, host, port, ca=None):
        if not self.wlan.isconnected():
            self.connect()
            raise OSError(113, "wifi down")
        if ca:
            from firmware.hal import tlsctx
            return await asyncio.open_connection(host, port, ssl=tlsctx.client(ca))
        return await asyncio.open_connection(host, port)


class Esp32Hal:
    platform = "esp32"
    root = ""

    def __init__(self):
        self.has_display = False
        self.net = None
        self._wdt = None
        self._edge = bytearray(5)
        self._pins = []

    def setup(self, cfg):
        pins = cfg.pins
        self._pins = []
        for i, n in enumerate(pins["buttons"]):
            p = machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_UP)
            p.irq(trigger=machine.Pin.IRQ_FALLING, handler=self._latch(i))
            self._pins.append(p)
        self._red = machine.Pin(pins["led_r"], machine.Pin.OUT, value=0)
        self._green = machine.Pin(pins["led_g"], machine.Pin.OUT, value=0)
        self._pwm = machine.PWM(machine.Pin(pins["buzzer"]), freq=2000, duty_u16=0)
        try:
            import ssd1306
            i2c = machine.I2C(0, sda=machine.Pin(pins["i2c_sda"]), scl=machine.Pin(pins["i2c_scl"]))
            if 0x3C in i2c.scan():
                self._oled = ssd1306.SSD1306_I2C(128, 32, i2c)
                self.has_display = True
        except Exception:
            self.has_display = False      # no driver or no display: LEDs and beeps only
        wifi = cfg.wifi
        self.net = Esp32Net(wifi.get("ssid", ""), wifi.get("password", ""))
        self.net.connect()

    def _latch(self, i):
        edge = self._edge

        def irq(_pin):
            edge[i] = 1
        return irq

    ticks_ms = staticmethod(time.ticks_ms)
    ticks_diff = staticmethod(time.ticks_diff)
    ticks_add = staticmethod(time.ticks_add)

    def time(self):
        return time.time() + _EPOCH_SHIFT

    async def sleep_ms(self, ms):
        await asyncio.sleep_ms(ms)

    def ntp(self):
        """Unix seconds from NTP, or None. Blocks up to ~1 s: called rarely, never per press."""
        if self.net is None or not self.net.is_up():
            return None
        try:
            import ntptime
            return ntptime.time() + _EPOCH_SHIFT
        except Exception:
            return None

    def path(self, name):
        return "/" + name

    def fsync(self, f):
        f.flush()                          # the VFS flush is the durability point on littlefs

    def button_count(self):
        return len(self._pins)

    def button_down(self, i):
        return self._pins[i].value() == 0

    def take_edge(self, i):
        e = self._edge[i]
        self._edge[i] = 0
        return e == 1

    def led(self, red, green):
        self._red.value(1 if red else 0)
        self._green.value(1 if green else 0)

    def tone(self, hz):
        if hz:
            self._pwm.freq(hz)
            self._pwm.duty_u16(32768)
        else:
            self._pwm.duty_u16(0)

    def show(self, text):
        if self.has_display:
            o = self._oled
            o.fill(0)
            y = 0
            for line in text.split("\n"):
                o.text(line[:16], 0, y)
                y += 10
            o.show()

    def unique_id(self):
        return machine.unique_id()

    def reset_cause(self):
        return _CAUSES.get(machine.reset_cause(), "other")

    def mem_free(self):
        return gc.mem_free()

    def mem_alloc(self):
        return gc.mem_alloc()

    def wdt_start(self, timeout_ms):
        self._wdt = machine.WDT(timeout=timeout_ms)

    def wdt_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def reboot(self, why="reboot"):
        machine.reset()

    def log(self, text):
        print(text)
