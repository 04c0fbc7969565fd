"""Flood benchmark (issue 14, item 4): one device floods QoS 0 1 KB messages; how long does
ANOTHER device wait for its acks, and does the gateway's memory stay bounded?

    .venv/bin/python bench/flood.py [--seconds 30] [--rate 20] [--size 1024] [--store sqlite]
                                    [--no-quench] [--protocol 3.1.1|5]

Against one real mosquitto (dynsec, as in the hall) and the real gateway process:

  victim   one device presses --rate times a second (open loop, signed `rec` QoS 1 as a
           device sends it) and times each press to the gateway's signed ack.
  flooder  another registered device, in its own process, publishes --size-byte QoS 0
           messages on its own uplink topic as fast as it can (paho, no pause).

Two phases of --seconds each, measured the same way: the victim alone, then the victim while
the flood runs (the gateway quenches the flooder at the broker, gateway/quench.py, unless
--no-quench: then it only rate-limits it, and the victim waits behind the flood's backlog).
Printed side by side: p50/p99/max press-to-ack (goal: p99 <= 50 ms with the flood; also the
p99 from 1 s into the flood and which presses waited over 50 ms), the gateway's RSS (before,
peak during the flood, after), how many flood messages were sent and how many the gateway
counted `rate_limited` / `queue_full`. Every victim record must be stored once and acked.
The load average is printed: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))

from harness.store import query  # noqa: E402

from bench.ingest import BenchDevice, cpu_s, pct  # noqa: E402
from simulator.broker import Mosquitto, standard_acl  # noqa: E402
from simulator.gateway_proc import GatewayProcess, write_config  # noqa: E402

GW_PASSWORD = "gw-flood"

# The flooder: plain paho in its own process, QoS 0 publishes as fast as the socket takes them.
FLOODER = textwrap.dedent("""
    import sys, time
    import paho.mqtt.client as mqtt
    host, port, user, pw, topic, size, seconds = sys.argv[1:8]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
    c.username_pw_set(user, pw)
    c.connect(host, int(port), 60)
    payload = b"\\x00" * int(size)
    sent = refused = 0
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        if not c.is_connected():
            try:                      # thrown out (quenched): try again, as an attacker would
                c.reconnect()
                c.loop(timeout=0.05)
            except OSError:
                pass
            if not c.is_connected():
                refused += 1
                time.sleep(0.1)
                continue
        for _ in range(100):
            if c.publish(topic, payload, qos=0).rc == 0:
                sent += 1
        c.loop(timeout=0)
        while c.is_connected() and c.want_write():   # what the socket did not take: drain it first
            c.loop_write()
            if c.want_write():
                time.sleep(0.0005)
    print(sent, refused, flush=True)
""")

def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def victim_phase(dev: BenchDevice, rate: float, seconds: float,
                       starts: list[float] | None = None) -> list[float]:
    """Presses at `rate`/s for `seconds`; press-to-ack latencies (s), in press order (with
    `starts`: each press's time after the phase began, same order)."""
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    slots: dict[int, tuple[float, float]] = {}
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        rid, payload = dev.make_rec()
        at = time.perf_counter() - t0
        lat = await dev.send_and_wait_ack(rid, payload)
        slots[i] = (at, lat)

    start = time.perf_counter()
    k = 0
    while True:
        at = start + k / rate
        if at - start > seconds:
            break
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(k)))
        k += 1
    await asyncio.gather(*tasks)
    for i in range(k):
        at, lat = slots[i]
        latencies.append(lat)
        if starts is not None:
            starts.append(at)
    return latencies


async def sample_rss(pid: int | None, stop: asyncio.Event, into: list[float]) -> None:
    while not stop.is_set():
        into.append(rss_mb(pid))
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except TimeoutError:
            pass


async def run(args: argparse.Namespace, work: Path) -> int:
    creds = {d: (secrets.token_hex(32), "pw-" + d) for d in ("victim", "flooder")}
    broker = Mosquitto(work / "mq", users={"gateway": GW_PASSWORD, **{d: p for d, (_, p) in creds.items()}},
                       acl=standard_acl(), client_ids={"gateway": "hcp-gateway-flood"})
    broker.start()
    (work / "gw").mkdir(parents=True)
    pg = None
    if args.store == "postgresql":
        from harness.postgres import PostgresServer
        pg = PostgresServer(fsync=True).start()
        db: Path | str = pg.create_database("flood")
    else:
        db = work / "gw" / "gateway.db"
    await _register(db, creds)
    cfg = write_config(work / "gw" / "gateway.toml", mqtt_port=broker.port, mqtt_password=GW_PASSWORD,
                       db_path=db, client_id="hcp-gateway-flood", broker_toml=broker.gateway_broker_toml())
    if not args.quench:
        cfg.write_text(cfg.read_text().replace("[ingest]\n", "[ingest]\nquench_s = 0\n", 1))
    if args.protocol:
        cfg.write_text(cfg.read_text().replace("[mqtt]\n", '[mqtt]\nprotocol = "%s"\n' % args.protocol, 1))
    gw = GatewayProcess(cfg, log_level="WARNING", python=args.gateway_python)
    victim = BenchDevice("victim", *creds["victim"], broker.host, broker.port)
    ok = False
    try:
        await asyncio.to_thread(gw.start)
        await victim.connect(subscribe=True)
        await victim_phase(victim, args.rate, 1.0)                       # warm-up
        rss_before = rss_mb(gw.pid)
        quiet = await victim_phase(victim, args.rate, args.seconds)

        flooder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOODER, broker.host, str(broker.port), "flooder", creds["flooder"][1],
            "hcp/1/up/flooder/rec", str(args.size), str(args.seconds + 1.0), stdout=asyncio.subprocess.PIPE)
        try:
            await asyncio.sleep(0.05)                                    # the flood has begun
            stop = asyncio.Event()
            rss: list[float] = []
            sampler = asyncio.create_task(sample_rss(gw.pid, stop, rss))
            cpu0 = cpu_s(gw.pid)
            starts: list[float] = []
            flooded = await victim_phase(victim, args.rate, args.seconds, starts)
            out_b, _ = await asyncio.wait_for(flooder.communicate(), args.seconds + 30)
            out = out_b.decode()
            await asyncio.sleep(1.0)
            gw_cpu = cpu_s(gw.pid) - cpu0
        finally:
            if flooder.returncode is None:
                flooder.kill()
                await flooder.wait()
        stop.set()
        await sampler
        sent, refused = (int(x) for x in (out.split() + ["0", "0"])[:2])
        flood_log = [ln for ln in gw.log_text().splitlines() if "floods" in ln or "quench" in ln]
        await asyncio.sleep(2.0)                                         # the backlog drains
        rss_after = rss_mb(gw.pid)
        after = await victim_phase(victim, args.rate, 2.0)
        await victim.close()
        alive = gw.running
    finally:
        gw.terminate()
        broker.stop()
    try:
        rej = dict(query(db, "SELECT reason, count FROM rejections"))
        quenched = any("disabled" in ln for ln in flood_log)
        stored = {r[0] for r in query(db, "SELECT record_id FROM records WHERE device_id = 'victim'")}
        dupes = query(db, "SELECT count(*) - count(DISTINCT record_id) FROM records")[0][0]
    finally:
        if pg is not None:
            pg.stop()

    def ms(xs: list[float], p: float) -> str:
        return "%.1f ms" % (pct(xs, p) * 1000)

    print(f"store               : {args.store}; victim {args.rate:g} presses/s, phases of {args.seconds:g} s")
    print(f"{'':22}{'no flood':>14}{'with flood':>14}{'after':>12}")
    print(f"{'press-to-ack p50':22}{ms(quiet, 50):>14}{ms(flooded, 50):>14}{ms(after, 50):>12}")
    print(f"{'press-to-ack p99':22}{ms(quiet, 99):>14}{ms(flooded, 99):>14}{ms(after, 99):>12}"
          "   (goal: p99 <= 50 ms with the flood)")
    print(f"{'press-to-ack max':22}{ms(quiet, 100):>14}{ms(flooded, 100):>14}{ms(after, 100):>12}")
    slow = [at for at, lat in zip(starts, flooded, strict=True) if lat > 0.050]
    settled = [lat for at, lat in zip(starts, flooded, strict=True) if at >= 1.0]
    print(f"{'  from 1 s into flood':22}{'':>14}{ms(settled, 99):>14}{'':>12}"
          "   (p99 once the flood is handled)")
    print(f"presses over 50 ms  : {len(slow)} of {len(flooded)}"
          + (f", pressed {min(slow):.2f}..{max(slow):.2f} s after the flood began" if slow else ""))
    print(f"{'gateway RSS':22}{rss_before:>11.1f} MB{max(rss or [0]):>11.1f} MB{rss_after:>9.1f} MB"
          "   (before / peak during / after)")
    print(f"gateway cpu         : {gw_cpu:.1f} s during the flood phase, "
          f"{gw_cpu / max(sent, 1) * 1e6:.1f} us per flood message")
    print(f"quench              : {'the flooder was quenched at the broker' if quenched else 'no quench'}"
          f" ({'dynsec' if args.quench else 'disabled: --no-quench'}); its reconnects refused: {refused}")
    for ln in flood_log[:3]:
        print("  gateway log: " + ln)
    print(f"flood               : {sent:,} messages of {args.size} B in {args.seconds + 1:g} s "
          f"({sent / (args.seconds + 1):,.0f}/s); gateway counted rate_limited "
          f"{rej.get('rate_limited', 0):,}, queue_full {rej.get('queue_full', 0):,}")
    acked = victim.acked
    missing = acked - stored
    print(f"store check         : victim {len(stored)} stored, {len(acked)} acked, "
          f"{len(missing)} acked-but-missing, {dupes} duplicates; gateway alive: {alive}")
    print(f"load average        : {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cpus")
    ok = (alive and not missing and dupes == 0 and pct(flooded, 99) <= 0.050
          and max(rss or [0]) < rss_before + 100)
    print("RESULT", "PASS" if ok else "FAIL (see the goals above)")
    return 0 if ok else 1


async def _register(db: Path | str, creds: dict[str, tuple[str, str]]) -> None:
    from gateway.broker_accounts import NoBrokerAccounts
    from gateway.devices import DeviceService
    from gateway.store import open_store

    store = await open_store(db)
    try:
        svc = DeviceService(store, NoBrokerAccounts())
        for d, (secret, pw) in creds.items():
            await svc.register(d, secret, pw)
    finally:
        await store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    ap.add_argument("--rate", type=float, default=20.0, help="the victim's presses per second")
    ap.add_argument("--size", type=int, default=1024, help="bytes per flood message")
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--no-quench", dest="quench", action="store_false",
                    help="[ingest] quench_s = 0: the gateway only rate-limits the flooder")
    ap.add_argument("--protocol", choices=("3.1.1", "5"), default=None,
                    help="[mqtt] protocol of the gateway's connection (default: the gateway's default)")
    ap.add_argument("--gateway-python", default=sys.executable,
                    help="interpreter for the gateway process (e.g. a profiling wrapper)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hcp-flood-") as tmp:
        return asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
