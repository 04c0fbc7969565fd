"""Firmware of the five-button evaluator: the same code on the ESP32, in the simulator and in tests.

Only firmware/hal/ knows where it runs; everything else talks to a HAL object. The version is
firmware/version.py. No code here on purpose: flash.py does not upload a docstring-only
__init__.py (MicroPython imports the directory as a package without it).
"""
