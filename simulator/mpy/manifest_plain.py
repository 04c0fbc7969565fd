# The unix MicroPython of the tests, without the firmware: what an ESP32's stock image freezes
# that the firmware uses (asyncio, micropython-lib's ssl wrapper over the tls module).
include("$(MPY_DIR)/extmod/asyncio")  # noqa: F821 - manifest API
require("ssl")  # noqa: F821
