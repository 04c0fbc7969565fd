"""flashtool: what `flash.py` does — image checks, esptool writes, raw-REPL provisioning, verify.

flash.py is the click entry point; every module here raises `FlashError` (one clear line)
for anything the technician must see, and flash.py turns it into a non-zero exit.
"""
