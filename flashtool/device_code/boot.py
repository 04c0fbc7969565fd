# /boot.py, written by flash.py. MicroPython runs it at every reset, before /main.py.
#
# It finishes a firmware-set switch that a provisioning run committed but could not finish
# (cable pulled, power cut). The switch is a redo log, /.hcp/switch.json:
#   put:      [[staged, final], ...]  renames, /boot.py first, then /main.py, then the rest
#   del:      [path, ...]             stale files of the old set (e.g. a .py shadowing a .mpy)
#   manifest: text of the new /.hcp/manifest.json
# Every step is idempotent, so running this again after another cut is always safe.
# flash.py runs the same code over the REPL (with _HCP_HOST set) to apply a switch step by step.
import os

SWITCH = "/.hcp/switch.json"
MANIFEST = "/.hcp/manifest.json"


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _replace(src, dst):
    try:
        os.rename(src, dst)
    except OSError:
        # FAT refuses to rename over an existing file; the staged copy survives a cut here.
        os.remove(dst)
        os.rename(src, dst)


def switch_step():
    # Do one step of the pending switch. Returns 0 when no switch is pending.
    import json

    try:
        with open(SWITCH) as f:
            plan = json.load(f)
    except OSError:
        return 0
    for pair in plan["put"]:
        if _exists(pair[0]):
            _replace(pair[0], pair[1])
            return 1
    for p in plan["del"]:
        if _exists(p):
            os.remove(p)
            return 1
    tmp = MANIFEST + ".tmp"
    with open(tmp, "w") as f:
        f.write(plan["manifest"])
    _replace(tmp, MANIFEST)
    os.remove(SWITCH)
    return 1


def finish_switch():
    n = 0
    while switch_step():
        n += 1
    return n


if "_HCP_HOST" not in globals():
    finish_switch()
