// Virtual serial device: the real MicroPython 1.27 (WebAssembly) behind a byte stream.
//
// stdin/stdout carry the serial bytes (simulator/serial_device.py relays them to a pty);
// stderr carries one-line logs ("bridge: ...") and the "READY" line.
//
// The main thread speaks the REPL protocols a real board speaks (friendly, raw, raw-paste);
// a worker thread owns the MicroPython VM.  Why a worker: the VM runs synchronously and a
// Ctrl-C cannot reach it, so a runaway exec can only be stopped by terminating the worker
// (the "watchdog"), which then restarts from the filesystem snapshot taken after the last
// completed job.  Each job is therefore atomic on the virtual flash, like a power cut.
//
// Options: --uid HEX (unique id, exposed as the file /.uid), --state-dir DIR (mirror the
// filesystem to DIR/fs and reload it at start), --exec-timeout S, --heapsize BYTES,
// --no-raw-paste (answer the raw-paste request with "not supported", as old boards do).

import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MPY_MJS = path.resolve(
  HERE, "../../node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs");

// Emscripten errno -> MicroPython (newlib/Linux) errno, so device code and tools see real codes.
const ERRNO_MAP = {
  44: 2, 20: 17, 31: 21, 54: 20, 28: 22, 51: 28, 2: 13, 55: 39, 63: 1, 29: 5, 8: 9,
  6: 11, 48: 12, 43: 19, 10: 16, 75: 18, 37: 36, 33: 24, 41: 23, 69: 30, 22: 27,
};

// Runs first in every VM: wraps os and open so OSError carries MicroPython errno numbers.
const SHIM = `
import sys, builtins
import os as _real_os
_MAP = ${JSON.stringify(ERRNO_MAP).replace(/"/g, "")}
def _fixed(e):
    a = e.args
    if a and type(a[0]) is int and a[0] in _MAP:
        return OSError(_MAP[a[0]])
    return e
def _wrap(fn):
    def call(*args):
        try:
            return fn(*args)
        except OSError as e:
            raise _fixed(e)
    return call
class _Os:
    pass
_os = _Os()
for _n in dir(_real_os):
    if not _n.startswith('__'):
        setattr(_os, _n, getattr(_real_os, _n))
for _n in ('remove', 'unlink', 'mkdir', 'rmdir', 'rename', 'stat', 'listdir', 'ilistdir',
           'chdir', 'getcwd', 'statvfs', 'mount', 'umount'):
    setattr(_os, _n, _wrap(getattr(_real_os, _n)))
_os.__name__ = 'os'
sys.modules['os'] = _os
sys.modules['uos'] = _os
builtins.open = _wrap(builtins.open)
del _n, _os, _Os, _wrap
`;

const EXCLUDED_TOP = new Set(["dev", "proc"]);

// ---------------------------------------------------------------- worker: owns the VM
async function workerMain() {
  const { loadMicroPython } = await import(MPY_MJS);
  let out = [];
  let outLen = 0;
  const flush = () => {
    if (outLen) {
      parentPort.postMessage({ t: "out", data: Buffer.concat(out) });
      out = [];
      outLen = 0;
    }
  };
  let quiet = false;
  const emit = (bytes) => {
    if (quiet) return;
    out.push(Buffer.from(bytes));
    outLen += bytes.length;
    if (outLen >= 4096) flush();
  };
  const mp = await loadMicroPython({
    stdout: emit, stderr: emit, linebuffer: false, heapsize: workerData.heapsize,
  });
  const FS = mp.FS;

  function restore(snapshot) {
    for (const [p, data] of snapshot) {
      if (data === null) FS.mkdirTree(p);
      else {
        FS.mkdirTree(path.posix.dirname(p));
        FS.writeFile(p, data);
      }
    }
  }
  function snapshot() {
    const entries = [];
    const walk = (dir) => {
      for (const name of FS.readdir(dir)) {
        if (name === "." || name === "..") continue;
        if (dir === "/" && EXCLUDED_TOP.has(name)) continue;
        const p = dir === "/" ? "/" + name : dir + "/" + name;
        const st = FS.stat(p);
        if (FS.isDir(st.mode)) {
          entries.push([p, null]);
          walk(p);
        } else if (FS.isFile(st.mode)) {
          entries.push([p, Buffer.from(FS.readFile(p))]);
        }
      }
    };
    walk("/");
    return entries;
  }
  function run(code) {
    try {
      mp.runPython(code);
      return "";
    } catch (e) {
      if (e && e.name === "PythonError") {
        if (e.type === "SystemExit") return "";
        return e.message.replace(/\r?\n/g, "\r\n");
      }
      return "bridge: " + String(e) + "\r\n";
    }
  }

  restore(workerData.snapshot);
  FS.writeFile("/.uid", workerData.uid + "\n");
  const shimErr = run(SHIM);
  if (shimErr) throw new Error("shim failed: " + shimErr);
  if (workerData.boot) {
    // A real board runs /boot.py on every (soft) reset.
    const bootErr = run("try:\n    import os\n    os.stat('/boot.py')\n    _b = True\nexcept OSError:\n    _b = False\n"
      + "if _b:\n    exec(open('/boot.py').read(), {'__name__': '__main__'})\ndel _b\n");
    if (bootErr) emit(Buffer.from(bootErr));
  }
  // The friendly REPL must be initialised before any character reaches it; its banner is
  // shown only when the board resets into the friendly REPL.
  quiet = !workerData.banner;
  mp.replInit();
  quiet = false;
  flush();
  parentPort.postMessage({ t: "ready", snapshot: snapshot() });

  parentPort.on("message", (msg) => {
    if (msg.t === "exec") {
      const err = run(msg.code);
      flush();
      parentPort.postMessage({ t: "done", err, snapshot: snapshot() });
    } else if (msg.t === "repl_init") {
      mp.replInit();
      flush();
      parentPort.postMessage({ t: "done", err: "", snapshot: null });
    } else if (msg.t === "repl_char") {
      mp.replProcessChar(msg.c);
      flush();
      parentPort.postMessage({ t: "done", err: "", snapshot: msg.c === 13 ? snapshot() : null });
    } else if (msg.t === "snapshot") {
      parentPort.postMessage({ t: "done", err: "", snapshot: snapshot() });
    }
  });
}

// ---------------------------------------------------------------- main: the serial side
function parseArgs(argv) {
  const opts = { uid: null, stateDir: null, execTimeout: 10, heapsize: 1024 * 1024, rawPaste: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === "--uid") { opts.uid = v; i++; }
    else if (a === "--state-dir") { opts.stateDir = v; i++; }
    else if (a === "--exec-timeout") { opts.execTimeout = Number(v); i++; }
    else if (a === "--heapsize") { opts.heapsize = Number(v); i++; }
    else if (a === "--no-raw-paste") { opts.rawPaste = false; }  // like boards before 1.13
    else { process.stderr.write(`bridge: unknown option ${a}\n`); process.exit(2); }
  }
  if (opts.uid !== null && !/^[0-9a-f]{2,32}$/.test(opts.uid)) {
    process.stderr.write("bridge: --uid must be 2..32 lowercase hex digits\n");
    process.exit(2);
  }
  if (!(opts.execTimeout > 0)) {
    process.stderr.write("bridge: --exec-timeout must be a positive number of seconds\n");
    process.exit(2);
  }
  return opts;
}

const log = (s) => process.stderr.write("bridge: " + s + "\n");

// Mirror of the device filesystem on disk (optional), written after every job.
class StateDir {
  constructor(dir) {
    this.root = path.join(dir, "fs");
    fs.mkdirSync(this.root, { recursive: true });
    this.last = new Map();
  }
  load() {
    const entries = [];
    const walk = (hostDir, devDir) => {
      for (const name of fs.readdirSync(hostDir).sort()) {
        if (name.endsWith(".bridge-tmp")) continue;
        const hp = path.join(hostDir, name);
        const dp = devDir === "/" ? "/" + name : devDir + "/" + name;
        if (fs.statSync(hp).isDirectory()) { entries.push([dp, null]); walk(hp, dp); }
        else entries.push([dp, fs.readFileSync(hp)]);
      }
    };
    walk(this.root, "/");
    for (const [p, d] of entries) this.last.set(p, d);
    return entries;
  }
  save(snapshot) {
    const now = new Map(snapshot);
    for (const [p, d] of snapshot) {
      const hp = path.join(this.root, p);
      const prev = this.last.get(p);
      if (d === null) { if (prev !== null) fs.mkdirSync(hp, { recursive: true }); continue; }
      if (prev && prev !== null && Buffer.compare(prev, d) === 0) continue;
      fs.mkdirSync(path.dirname(hp), { recursive: true });
      fs.writeFileSync(hp + ".bridge-tmp", d);
      fs.renameSync(hp + ".bridge-tmp", hp);
    }
    // Remove what disappeared, deepest first.
    const gone = [...this.last.keys()].filter((p) => !now.has(p)).sort().reverse();
    for (const p of gone) fs.rmSync(path.join(this.root, p), { recursive: true, force: true });
    this.last = now;
  }
}

const BANNER_RAW = "raw REPL; CTRL-B to exit\r\n";
const PASTE_WINDOW = 256;

class Bridge {
  constructor(opts) {
    this.opts = opts;
    this.state = opts.stateDir ? new StateDir(opts.stateDir) : null;
    this.snapshot = this.state ? this.state.load() : [];
    this.uid = opts.uid || this.persistentUid();
    this.mode = "friendly";    // friendly | raw | paste
    this.line = [];
    this.pasteRemain = 0;
    this.input = [];           // serial bytes not yet consumed (a UART buffer)
    this.busy = true;          // until the worker is ready
    this.job = null;
    this.worker = null;
  }
  persistentUid() {
    if (!this.opts.stateDir) return crypto.randomBytes(6).toString("hex");
    const f = path.join(this.opts.stateDir, "uid");
    if (fs.existsSync(f)) return fs.readFileSync(f, "utf8").trim();
    const uid = crypto.randomBytes(6).toString("hex");
    fs.writeFileSync(f, uid + "\n");
    return uid;
  }
  write(s) { process.stdout.write(typeof s === "string" ? Buffer.from(s, "latin1") : s); }

  startWorker(boot, then) {
    this.busy = true;
    const banner = this.mode === "friendly";
    const w = new Worker(fileURLToPath(import.meta.url), {
      workerData: { snapshot: this.snapshot, uid: this.uid, heapsize: this.opts.heapsize, boot, banner },
    });
    this.worker = w;
    w.on("message", (m) => {
      if (w !== this.worker) return;
      if (m.t === "out") this.write(m.data);
      else if (m.t === "ready") { this.keep(m.snapshot); this.busy = false; if (then) then(); this.pump(); }
      else if (m.t === "done") this.finishJob(m);
    });
    w.on("error", (e) => { if (w === this.worker) { log("worker failed: " + e.message); process.exit(3); } });
  }
  keep(snapshot) {
    if (!snapshot) return;
    this.snapshot = snapshot;
    if (this.state) this.state.save(snapshot);
  }
  // Send one job to the VM; `after(err)` runs when it completes (or the watchdog fires).
  submit(msg, after) {
    this.busy = true;
    const timer = setTimeout(() => this.watchdog(), this.opts.execTimeout * 1000);
    this.job = { after, timer };
    this.worker.postMessage(msg);
  }
  finishJob(m) {
    const job = this.job;
    this.job = null;
    clearTimeout(job.timer);
    this.keep(m.snapshot);
    this.busy = false;
    job.after(m.err);
    this.pump();
  }
  watchdog() {
    const job = this.job;
    this.job = null;
    log(`exec exceeded ${this.opts.execTimeout}s: watchdog reset (filesystem as after the last completed job)`);
    this.worker.terminate();
    this.startWorker(true, () => job.after(
      `WatchdogReset: exec exceeded ${this.opts.execTimeout}s, device restarted\r\n`));
  }
  softReset(then) {
    this.worker.terminate();
    this.startWorker(true, then);
  }

  feed(buf) {
    for (const b of buf) this.input.push(b);
    this.pump();
  }
  pump() {
    while (!this.busy && this.input.length) this.step(this.input.shift());
  }
  step(c) {
    if (this.mode === "paste") return this.stepPaste(c);
    if (this.mode === "raw") return this.stepRaw(c);
    return this.stepFriendly(c);
  }
  stepFriendly(c) {
    if (c === 0x01) {
      this.mode = "raw";
      this.line = [];
      this.write("\r\n" + BANNER_RAW + ">");
    } else if (c === 0x04) {
      this.write("MPY: soft reboot\r\n");
      this.softReset(null);
    } else {
      this.submit({ t: "repl_char", c }, () => {});
    }
  }
  stepRaw(c) {
    const line = this.line;
    if (c === 0x01) {
      if (line.length === 2 && line[0] === 0x05) {
        this.line = [];
        if (line[1] === 0x41 && this.opts.rawPaste) {
          // Raw-paste: "R\x01" + window size (uint16 LE), then flow-controlled data.
          this.mode = "paste";
          this.pasteRemain = PASTE_WINDOW;
          this.write(Buffer.from([0x52, 0x01, PASTE_WINDOW & 0xff, PASTE_WINDOW >> 8]));
        } else {
          this.write("R\x00");
        }
        return;
      }
      this.line = [];
      this.write("\r\n" + BANNER_RAW + ">");
    } else if (c === 0x02) {
      this.line = [];
      this.mode = "friendly";
      this.write("\r\n");
      this.submit({ t: "repl_init" }, () => {});
    } else if (c === 0x03) {
      this.line = [];
    } else if (c === 0x04) {
      this.line = [];
      this.write("OK");
      if (line.length === 0) {
        this.write("\r\nMPY: soft reboot\r\n");
        this.softReset(() => this.write(BANNER_RAW + ">"));
        return;
      }
      this.runRaw(Buffer.from(line).toString("utf8"));
    } else {
      line.push(c);
    }
  }
  stepPaste(c) {
    if (c === 0x04) {
      const code = Buffer.from(this.line).toString("utf8");
      this.line = [];
      this.mode = "raw";
      this.write("\x04");
      this.runRaw(code);
    } else if (c === 0x03) {
      // Host aborted the paste: acknowledge the end, report the interrupt as a board does.
      this.line = [];
      this.mode = "raw";
      this.write("\x04\x04KeyboardInterrupt: \r\n\x04>");
    } else {
      this.line.push(c);
      if (--this.pasteRemain === 0) {
        this.pasteRemain = PASTE_WINDOW;
        this.write("\x01");
      }
    }
  }
  runRaw(code) {
    this.submit({ t: "exec", code }, (err) => this.write("\x04" + err + "\x04>"));
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const bridge = new Bridge(opts);
  bridge.startWorker(true, () => {
    log(`READY uid=${bridge.uid}`);
  });
  process.stdin.on("data", (d) => bridge.feed(d));
  process.stdin.on("end", () => process.exit(0));
  process.on("SIGTERM", () => process.exit(0));
}

if (isMainThread) main();
else workerMain().catch((e) => { parentPort.postMessage({ t: "out", data: Buffer.from(String(e)) }); throw e; });
