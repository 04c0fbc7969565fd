# Helpers flash.py defines in the device's REPL session (MicroPython and CPython subset).
# Output is printed as Python literals that the host reads with ast.literal_eval.
import binascii
import hashlib
import os
import sys

_hcp_buf = bytearray(512)  # one read buffer for all hashing: no allocation per block


def _hcp_hash(p):
    h = hashlib.sha256()
    mv = memoryview(_hcp_buf)
    with open(p, "rb") as f:
        while True:
            n = f.readinto(_hcp_buf)
            if not n:
                break
            h.update(mv[:n])
    return binascii.hexlify(h.digest()).decode()


def _hcp_walk(d, out):
    try:
        it = list(os.ilistdir(d))
    except OSError:
        return
    for e in it:
        p = d + "/" + e[0]
        if e[1] & 0x4000:
            _hcp_walk(p, out)
        else:
            out.append(p)


def _hcp_exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _hcp_files():
    files = []
    for d in ("/firmware", "/protocol", "/.hcp"):
        _hcp_walk(d, files)
    for p in ("/main.py", "/boot.py", "/config.json"):
        if _hcp_exists(p):
            files.append(p)
    return files


def _hcp_hashes(paths):
    print("{")
    for p in paths:
        print(repr(p), ":", repr(_hcp_hash(p)), ",")
    print("}")


def _hcp_read(p):
    # Whole small file (config, manifest) as a bytes literal, or None.
    try:
        with open(p, "rb") as f:
            print(repr(f.read()))
    except OSError:
        print("None")


def _hcp_mkdirs(p):
    cur = ""
    for part in p.split("/")[1:-1]:
        cur = cur + "/" + part
        if not _hcp_exists(cur):
            os.mkdir(cur)


def _hcp_frozen_fw():
    # The firmware's identifier when it is frozen into the board's image, else None. Only
    # '.frozen' is searched (a .mpy set on flash does not count), and the modules are dropped
    # again so a later import finds whatever the board will really run.
    saved = sys.path[:]
    sys.path[:] = [".frozen"]
    try:
        import firmware.version

        return firmware.version.VERSION
    except ImportError:
        return None
    finally:
        sys.path[:] = saved
        for m in ("firmware.version", "firmware"):
            sys.modules.pop(m, None)


def _hcp_info():
    impl = sys.implementation
    uid = None
    try:
        import machine

        uid = binascii.hexlify(machine.unique_id()).decode()
    except (ImportError, AttributeError):  # no machine, or one without unique_id (unix port)
        try:
            with open("/.uid") as f:
                uid = f.read().strip()
        except OSError:
            pass
    print(
        repr(
            {
                "name": impl.name,
                "version": tuple(impl.version[:3]),
                "mpy": getattr(impl, "_mpy", None),
                "machine": getattr(impl, "_machine", ""),
                "uid": uid,
                "frozen_fw": _hcp_frozen_fw(),
            }
        )
    )


def _hcp_remove_leftovers(paths):
    for p in paths:
        if _hcp_exists(p):
            os.remove(p)
