"""simulator.micropython: the real MicroPython 1.27 runner (WebAssembly under node)."""

from __future__ import annotations

import time

import pytest

from simulator.micropython import MicroPythonError, MicroPythonTimeout, RunMicroPython


def test_is_micropython_1_27(mpy: RunMicroPython) -> None:
    res = mpy("import sys\nprint(sys.implementation.name, sys.implementation.version[:3])")
    assert res.stdout == "micropython (1, 27, 0)\n"
    assert res.returncode == 0


def test_exception_comes_back_with_traceback(mpy: RunMicroPython) -> None:
    code = "print('before')\ndef f():\n    raise ValueError('boom')\nf()\n"
    with pytest.raises(MicroPythonError) as ei:
        mpy(code)
    err = ei.value
    assert err.exc_type == "ValueError"
    assert err.stdout == "before\n"
    assert 'line 3, in f' in err.traceback and err.traceback.rstrip().endswith("ValueError: boom")
    assert "ValueError: boom" in err.stderr


def test_system_exit_is_a_return_code(mpy: RunMicroPython) -> None:
    assert mpy("import sys\nsys.exit(3)").returncode == 3
    assert mpy("raise SystemExit").returncode == 0


def test_infinite_loop_is_killed(mpy: RunMicroPython) -> None:
    t0 = time.monotonic()
    with pytest.raises(MicroPythonTimeout) as ei:
        mpy("print('spinning')\nwhile True:\n    pass\n", timeout=1.5)
    assert time.monotonic() - t0 < 4
    # Output written before the loop survives the kill (run.mjs flushes at each newline).
    assert ei.value.stdout == "spinning\n"


def test_files_and_source_trees_are_in_the_fs(mpy: RunMicroPython) -> None:
    code = (
        "import os, errno\n"
        "print(open('/data/blob.bin', 'rb').read())\n"
        "print(open('note.txt').read())\n"  # relative to cwd_fs
        "import pkg.mod\n"
        "print(pkg.mod.VALUE)\n"
        "import protocol\n"  # the repo's protocol/ tree, at the device path
        "print('protocol' in os.listdir('/'))\n"
        "try:\n    open('/missing')\nexcept OSError as e:\n    print(errno.ENOENT, e.errno)\n"
    )
    res = mpy(
        code,
        files={
            "/data/blob.bin": b"\x00\xff",
            "note.txt": "hi",
            "/pkg/__init__.py": "",
            "/pkg/mod.py": "VALUE = 42\n",
        },
        tree=("protocol",),
        cwd_fs="/work",
    )
    # Quirk of the WebAssembly build: the FS raises emscripten errno values (ENOENT 44, EEXIST 20)
    # while the errno module holds the usual ones (2, 17). Code shared with the device must not
    # compare e.errno with errno.ENOENT alone.
    assert res.stdout.splitlines() == ["b'\\x00\\xff'", "hi", "42", "True", "2 44"]


def test_async_code_runs(mpy: RunMicroPython) -> None:
    code = (
        "import asyncio\n"
        "async def worker(ev, out):\n"
        "    await asyncio.sleep_ms(5)\n"
        "    out.append('worker')\n"
        "    ev.set()\n"
        # asyncio.sleep/sleep_ms return a SingletonGenerator, not a coroutine (MicroPython asyncio,
        # on the device too): gather/wait_for/create_task need it wrapped in an async def.
        "async def nap(ms):\n"
        "    await asyncio.sleep_ms(ms)\n"
        "    return ms\n"
        "async def main():\n"
        "    ev, out = asyncio.Event(), []\n"
        "    asyncio.create_task(worker(ev, out))\n"
        "    await ev.wait()\n"
        "    r = await asyncio.gather(nap(1), nap(2))\n"
        "    print(out, r)\n"
        "await main()\n"
    )
    assert mpy(code, is_async=True).stdout == "['worker'] [1, 2]\n"


def test_async_exception(mpy: RunMicroPython) -> None:
    code = (
        "import asyncio\n"
        "async def main():\n"
        "    await asyncio.sleep_ms(1)\n"
        "    raise KeyError('k')\n"
        "await main()\n"
    )
    with pytest.raises(MicroPythonError) as ei:
        mpy(code, is_async=True)
    assert ei.value.exc_type == "KeyError"
