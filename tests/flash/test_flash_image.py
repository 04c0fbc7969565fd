"""flash.py firmware: images are checked with esptool's API before anything is written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from esptool.bin_image import ELFSection, ESP32FirmwareImage, ESP32S3FirmwareImage
from flash_support import FLASH

from flashtool.errors import FlashError
from flashtool.esp import validate_image
from simulator.serial_device import VirtualSerialDevice


def tiny_esp32_image(path: Path, cls: type = ESP32FirmwareImage, entry: int = 0x40080000) -> bytes:
    img = cls()
    img.entrypoint = entry
    img.segments = [
        ELFSection(b".dram0.data", 0x3FFB0000, b"\x11" * 64, 0),
        ELFSection(b".iram0.text", entry, b"\x22" * 128, 0),
    ]
    img.save(str(path))
    return path.read_bytes()


@pytest.fixture
def good(tmp_path: Path) -> Path:
    p = tmp_path / "micropython.bin"
    tiny_esp32_image(p)
    return p


def corrupt(tmp_path: Path, good: Path, name: str, offset: int, value: int | None = None) -> Path:
    data = bytearray(good.read_bytes())
    data[offset] = value if value is not None else data[offset] ^ 0xFF
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return p


def checksum_offset(data: bytes) -> int:
    return len(data) - 32 - 1  # the checksum byte sits right before the appended SHA-256


def test_valid_image_passes(good: Path) -> None:
    assert "checksum ok, sha256 ok" in validate_image(str(good))


def test_corrupt_images_are_refused(tmp_path: Path, good: Path) -> None:
    data = good.read_bytes()
    cases = {
        "magic": (corrupt(tmp_path, good, "magic.bin", 0, 0x00), "not an ESP image"),
        "checksum": (corrupt(tmp_path, good, "ck.bin", checksum_offset(data)), "checksum mismatch"),
        "hash": (corrupt(tmp_path, good, "hash.bin", len(data) - 1), "SHA-256 mismatch"),
        "segment": (corrupt(tmp_path, good, "seg.bin", 24 + 8 + 3), "checksum mismatch"),
    }
    s3 = tmp_path / "s3.bin"
    img = ESP32S3FirmwareImage()
    img.entrypoint = 0x40380000
    img.segments = [ELFSection(b".iram0.text", 0x40380000, b"\x22" * 128, 0)]
    img.save(str(s3))
    cases["chip"] = (s3, "not esp32")
    trunc = tmp_path / "trunc.bin"
    trunc.write_bytes(data[:40])
    cases["truncated"] = (trunc, "unreadable image")
    for name, (path, expect) in cases.items():
        with pytest.raises(FlashError, match=expect):
            validate_image(str(path))
        assert name


def test_corrupt_image_refused_before_touching_the_port(
    tmp_path: Path, good: Path, vdev: VirtualSerialDevice
) -> None:
    bad = corrupt(tmp_path, good, "ck.bin", checksum_offset(good.read_bytes()))
    before = vdev.bytes_from_host
    r = subprocess.run(
        FLASH + ["firmware", "--port", vdev.path, "--image", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "checksum mismatch" in r.stderr and "Traceback" not in r.stderr + r.stdout
    assert vdev.bytes_from_host == before  # nothing was sent to the board


def test_valid_image_against_a_board_without_bootloader(good: Path, vdev: VirtualSerialDevice) -> None:
    r = subprocess.run(
        FLASH + ["firmware", "--port", vdev.path, "--image", str(good)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert "no bootloader answered" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_missing_image_and_port(tmp_path: Path, good: Path) -> None:
    r = subprocess.run(
        FLASH + ["firmware", "--port", "/dev/nonexistent-hcp", "--image", str(tmp_path / "x.bin")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "cannot read image" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        FLASH + ["firmware", "--port", "/dev/nonexistent-hcp", "--image", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "no such serial port" in r.stderr and "Traceback" not in r.stderr
