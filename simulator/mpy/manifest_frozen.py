# The unix MicroPython with the firmware frozen in, as firmware/manifest.py freezes it for an ESP32
# (plus the unix HAL): scripts/build_micropython.sh builds it.
include("manifest_plain.py")  # noqa: F821 - manifest API
include("../../firmware/manifest.py", port="unix")  # noqa: F821
