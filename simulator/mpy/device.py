# A simulated evaluator: the unchanged firmware (firmware.main.Firmware.run_async on the unix HAL)
# as one real MicroPython process of the 32-bit unix port. Run by simulator/mpdevice.py as
#     micropython -X heapsize=<ESP32's free heap> simulator/mpy/device.py <control port> <device id>
#         <reset cause> <wifi up: 1 or 0>
# with the device's flash directory (config.json, data/, and the .mpy set unless the firmware is
# frozen in) as the current directory.
#
# The control channel is one TCP connection to 127.0.0.1:<control port>, lines both ways:
#   in:  p <i>  press button i (released once the firmware has taken the press; "r <i> busy"
#               while its last press is still being debounced)
#        w 0|1  Wi-Fi down / up          u  forget the wall clock (RTC lost)
#        m      collect, then report the heap         q  stop (journal closed, exit 0)
#   out: hi <device id> <heap before the firmware>    v <fw> (booted)
#        r <i> <rb> <rs> <kind> <tone> <invitation>  (a press)     a <rb> <rs>  (an ack)
#        s <state> <online> <depth> <invitation>  (on change)      c <command>  (one the app applied)
#        m <alloc> <free>                         o <what> <value>  (LED, tone, display)
# Exit codes: 0 stopped, 3 rebooted (the gateway's reboot command: start me again), 4 cannot start
# (config.json missing or invalid, as the device stops at its REPL), 1 a crash.
import sys

sys.path[0] = ""  # as on the device: the flash first, then the frozen modules

import asyncio  # noqa: E402
import gc  # noqa: E402


def instrument(fw, hal, out):
    """Report presses, acks and applied commands: wrappers that call the real code unchanged."""
    app = fw.app
    on_button = app.on_button

    def on_press(i, now):
        before = dict(app.counts)
        rid = on_button(i, now)
        hal.release(i)
        if rid is None:
            out.write(b"r %d 0 0 - %d -\n" % (i, hal.tone_hz))
        else:
            kind = "-"
            for k in app.counts:          # the kind whose count this press moved
                if app.counts[k] != before[k]:
                    kind = k
            inv = app.last_inv if kind in ("rated", "extra") else ""
            out.write(b"r %d %d %d %s %d %s\n" % (i, rid[0], rid[1], kind, hal.tone_hz, inv or "-"))
        return rid

    fw._on_press = on_press               # Firmware.step() calls this for each debounced press

    journal = fw.journal
    ack = journal.ack

    def on_ack(rb, rs):
        done = ack(rb, rs)
        if done:
            out.write(b"a %d %d\n" % (rb, rs))
        return done

    journal.ack = on_ack
    on_command = app.on_command

    def command(msg, now=None):
        r = on_command(msg, now)
        out.write(b"c %s\n" % msg.get("t"))
        return r

    app.on_command = command


async def status(fw, out):
    """Report the app's state when it changes, and keep the channel drained."""
    last = None
    while True:
        app = fw.app
        link = fw.link
        st = (app.state, 1 if link is not None and link.connected else 0, fw.journal.depth(), app.inv or "-")
        if st != last:
            last = st
            out.write(b"s %s %d %d %s\n" % st)
        await out.drain()
        await asyncio.sleep_ms(20)


async def control(fw, hal, reader, out):
    while True:
        line = await reader.readline()
        if not line:
            sys.exit(0)                     # the simulator went away
        cmd = line.split()
        op = cmd[0]
        if op == b"p":
            i = int(cmd[1])
            if fw.buttons.settled(i):
                hal.press(i)
            else:
                out.write(b"r %d busy\n" % i)   # still debouncing the last press: ask again
        elif op == b"w":
            if cmd[1] == b"1":
                hal.net.restore()
            else:
                hal.net.cut()
        elif op == b"u":
            fw.clock.synced = False
            fw.clock.source = ""
        elif op == b"m":
            gc.collect()
            out.write(b"m %d %d\n" % (gc.mem_alloc(), gc.mem_free()))
        elif op == b"q":
            fw.journal.close()
            await out.drain()
            sys.exit(0)


async def main(port, device_id, cause, wifi):
    reader, out = await asyncio.open_connection("127.0.0.1", port)
    out.s.setsockopt(6, 1, 1)   # IPPROTO_TCP, TCP_NODELAY: small lines, answered at once (no Nagle)
    gc.collect()
    out.write(b"hi %s %d\n" % (device_id, gc.mem_alloc()))   # the heap before any firmware
    from firmware.hal.unix import UnixHal
    from firmware.main import Firmware
    from firmware.version import VERSION
    hal = UnixHal(reset_cause=cause, out=out)
    hal.net.up = wifi                       # a device powered on during a Wi-Fi loss starts offline
    fw = Firmware(hal)
    hal.uid = fw.cfg.device_id.encode()[-6:]
    out.write(b"v %s\n" % VERSION)
    instrument(fw, hal, out)
    asyncio.create_task(status(fw, out))
    asyncio.create_task(control(fw, hal, reader, out))
    await fw.run_async()


def run():
    from firmware.config import ConfigError
    from firmware.hal.unix import Reboot
    try:
        asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"))
    except Reboot:
        sys.exit(3)
    except ConfigError as e:                # as firmware.main.run: nothing to run, stop (no restart)
        print("cannot start: %s" % e)
        sys.exit(4)


run()
