"""The hardware boundary: firmware.hal.esp32 on the device, firmware.hal.host elsewhere
(firmware.main.run picks one by sys.platform).

Both expose the same attributes (see docs/firmware.md, "HAL"); firmware code above this
package never imports machine, network or CPython-only modules. No code here on purpose:
flash.py does not upload a docstring-only __init__.py (MicroPython imports the directory as a
package without it).
"""
