"""Small file helpers on top of the HAL's root: atomic replace, existence, directories."""

import os


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def ensure_dir(path):
    if not exists(path):
        os.mkdir(path)


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def read_bytes(path):
    """The file's bytes, or None when it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def write_atomic(hal, path, data):
    """Write a new version of a small file so a power cut leaves the old or the new one.

    The data goes to path.new first and is made durable, then renamed over the old file
    (littlefs, POSIX and the wasm filesystem replace atomically; a VFS that refuses to rename
    over a file gets the old one removed first, leaving path.new for load() to pick up).
    """
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
        hal.fsync(f)
    try:
        os.rename(tmp, path)
    except OSError:
        remove(path)
        os.rename(tmp, path)


def read_atomic(path):
    """Counterpart of write_atomic: the file, or its finished .new when the rename was cut."""
    data = read_bytes(path)
    if data is None:
        data = read_bytes(path + ".new")
    return data
