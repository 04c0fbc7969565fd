"""MicroPython image checks and flashing, through esptool's Python API.

`esptool image-info` exits 0 even on a bad checksum, so we load the image with
`esptool.bin_image.LoadFirmwareImage` and check magic, chip id, checksum and the appended
SHA-256 ourselves, before a single byte goes to the board.  A MicroPython .bin for the ESP32
is a merged file (bootloader at file offset 0, the application at 0xF000 when written at
0x1000): every image we find at those offsets is checked.
"""

from __future__ import annotations

import contextlib
import io
import os

from flashtool.errors import FlashError

IMAGE_MAGIC = 0xE9
# File offsets of further images in a merged MicroPython .bin written at 0x1000 (ESP32):
# the application partition at flash 0x10000.
APP_FILE_OFFSETS = (0xF000,)


def _check_one(chip: str, data: bytes, where: str) -> str:
    from esptool.bin_image import LoadFirmwareImage
    from esptool.util import FatalError

    if not data or data[0] != IMAGE_MAGIC:
        got = f"{data[0]:#04x}" if data else "empty file"
        raise FlashError(f"{where}: not an ESP image (magic {got}, expected {IMAGE_MAGIC:#04x})")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            img = LoadFirmwareImage(chip, data)
    except (FatalError, KeyError) as e:
        raise FlashError(f"{where}: unreadable image: {e}") from None
    except Exception as e:  # noqa: BLE001 - esptool raises struct errors etc. on truncated files
        raise FlashError(f"{where}: unreadable image ({type(e).__name__}: {e})") from None
    want_chip = img.ROM_LOADER.IMAGE_CHIP_ID
    if img.chip_id != want_chip:
        raise FlashError(f"{where}: built for chip id {img.chip_id}, not {chip} (chip id {want_chip})")
    calc = img.calculate_checksum()
    if img.checksum != calc:
        raise FlashError(f"{where}: checksum mismatch (stored {img.checksum:#04x}, computed {calc:#04x})")
    if img.append_digest:
        if len(img.stored_digest) != 32 or img.stored_digest != img.calc_digest:
            raise FlashError(f"{where}: SHA-256 mismatch (the file is damaged or truncated)")
    digest = "sha256 ok" if img.append_digest else "no sha256"
    return f"{where}: {len(img.segments)} segments, checksum ok, {digest}"


def validate_image(path: str, chip: str = "esp32") -> str:
    """Check every image in the file; return a one-line summary or raise FlashError."""
    chip = chip.lower()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise FlashError(f"{path}: cannot read image: {e.strerror}") from None
    from esptool.bin_image import LoadFirmwareImage  # noqa: F401 - fails early if esptool is missing

    if chip not in ("esp32", "esp32s2", "esp32s3", "esp32c3", "esp32c6"):
        raise FlashError(f"--chip {chip}: unsupported (esp32, esp32s2, esp32s3, esp32c3, esp32c6)")
    parts = [_check_one(chip, data, os.path.basename(path))]
    for off in APP_FILE_OFFSETS:
        if len(data) > off and data[off] == IMAGE_MAGIC:
            parts.append(_check_one(chip, data[off:], f"{os.path.basename(path)}@{off:#x}"))
    return "; ".join(parts)


def write_image(port: str, image: str, chip: str, baud: int, offset: str, erase: bool = True) -> None:
    """Erase and write through esptool; failures become one line."""
    import esptool
    from esptool.util import FatalError

    if "://" not in port and not os.path.exists(port):
        raise FlashError(f"{port}: no such serial port (see `flash.py ports`)")
    args = ["--chip", chip, "--port", port, "--baud", str(baud), "--connect-attempts", "2", "write-flash"]
    if erase:
        args.append("--erase-all")
    args += [offset, image]
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            esptool.main(args)
    except FatalError as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Failed to connect" in text or "No serial data received" in text or "Invalid head" in text:
            raise FlashError(
                f"{port}: no bootloader answered (hold BOOT while plugging in, or check the cable): {text}"
            ) from None
        raise FlashError(f"{port}: esptool failed: {text}") from None
    except SystemExit as e:
        raise FlashError(
            f"{port}: esptool stopped (exit {e.code}): {log.getvalue().strip()[-200:]}"
        ) from None
    except OSError as e:
        raise FlashError(f"{port}: {e.strerror or e}") from None
