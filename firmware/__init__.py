"""Firmware of the five-button evaluator: the same code on the ESP32, in the simulator and in tests.

Only firmware/hal/ knows where it runs; everything else talks to a HAL object.
"""

VERSION = "0.1.0"
