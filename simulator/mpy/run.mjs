// Run one job under real MicroPython 1.27 (the WebAssembly "pyscript" variant) and exit.
//
// Driven by simulator/micropython.py. The job arrives as JSON on stdin:
//   {code, files: {"/abs/path": base64}, is_async, cwd, status_fd}
// MicroPython's stdout/stderr go to ours byte for byte, flushed at every newline so that a job
// killed for a timeout still shows what it printed. The outcome goes as one JSON object to
// status_fd (a pipe the Python side passes in), keeping it apart from the program's output:
//   {"status": "ok"} | {"status": "exception", "type", "traceback"} | {"status": "exit", "code"}
//   | {"status": "internal", "error"}
// Exit codes: 0 ok, 1 uncaught Python exception, n for SystemExit(n), 70 runner failure.
import fs from "node:fs";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

function writeAll(fd, buf) {
  // Synchronous writes: the Python code may spin forever (Ctrl-C cannot interrupt the wasm),
  // and output written before such a loop must reach the pipe before we are killed.
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if (e.code !== "EAGAIN") throw e;
    }
  }
}

function sink(fd) {
  let pending = [];
  const flush = () => {
    if (pending.length) writeAll(fd, Buffer.from(pending));
    pending = [];
  };
  const put = (bytes) => {
    for (const c of bytes) {
      pending.push(c);
      if (c === 10 || pending.length >= 4096) flush();
    }
  };
  return { put, flush };
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

const out = sink(1);
const err = sink(2);
let statusFd = -1;

function finish(status, code) {
  out.flush();
  err.flush();
  if (statusFd >= 0) writeAll(statusFd, Buffer.from(JSON.stringify(status)));
  // Exit explicitly: tasks the program left scheduled must not keep node alive.
  process.exit(code);
}

function pythonOutcome(error) {
  // PythonError.message is the full MicroPython traceback text; .type the exception class name.
  const tb = String(error.message);
  if (error.type === "SystemExit") {
    // CPython semantics: no argument or None -> 0, an int -> that code, anything else -> 1.
    const last = tb.trimEnd().split("\n").pop() || "";
    const arg = last.replace(/^SystemExit:?\s*/, "");
    if (arg === "" || arg === "None") return [{ status: "exit", code: 0 }, 0];
    if (/^-?\d+$/.test(arg)) {
      const code = Number(arg) & 0xff;
      return [{ status: "exit", code }, code];
    }
    err.put(Buffer.from(arg + "\n"));
    return [{ status: "exit", code: 1 }, 1];
  }
  err.put(Buffer.from(tb));
  // Only the tail: the status pipe is read after exit, so it must fit the pipe buffer (64 KiB).
  return [{ status: "exception", type: error.type, traceback: tb.slice(-16000) }, 1];
}

process.on("unhandledRejection", (e) => finish({ status: "internal", error: String(e && e.stack || e) }, 70));

try {
  const job = JSON.parse(await readStdin());
  statusFd = job.status_fd ?? -1;
  const mp = await loadMicroPython({
    stdout: out.put,
    stderr: err.put,
    linebuffer: false, // raw bytes: we buffer ourselves and keep partial last lines
  });
  for (const [path, b64] of Object.entries(job.files || {})) {
    const dir = path.slice(0, path.lastIndexOf("/"));
    if (dir) mp.FS.mkdirTree(dir);
    mp.FS.writeFile(path, Buffer.from(b64, "base64"));
  }
  const cwd = job.cwd || "/";
  mp.FS.mkdirTree(cwd);
  mp.FS.chdir(cwd);
  // As on the device: "" (cwd) first, then "/" so "import protocol.codec" finds /protocol/codec.py
  // whatever the cwd is.
  mp.runPython('import sys\nif "/" not in sys.path:\n    sys.path.insert(1, "/")\ndel sys\n');
  try {
    if (job.is_async) {
      // No asyncio.run in this variant: the code awaits at top level and we await the result.
      await mp.runPythonAsync(job.code);
    } else {
      mp.runPython(job.code);
    }
  } catch (e) {
    if (e && e.name === "PythonError") {
      const [status, code] = pythonOutcome(e);
      finish(status, code);
    }
    throw e;
  }
  finish({ status: "ok" }, 0);
} catch (e) {
  finish({ status: "internal", error: String((e && e.stack) || e) }, 70);
}
