# Runs INSIDE MicroPython: applies every shared vector and prints one result line each.
# Kept as a plain file so the exact same checker text could run on a real board too.
import binascii
import json

from protocol import auth, messages

with open("/vectors.json") as f:
    d = json.load(f)
keys = {"key": auth.Key(d["key"]), "other_key": auth.Key(d["other_key"])}
for v in d["encode"]:
    fields = v["fields"]
    m = {}
    for k in fields:
        m[k] = fields[k]
    wire = messages.sign(m, keys["key"])
    print("W", binascii.hexlify(wire).decode(), v["name"])
for v in d["decode"]:
    payload = binascii.unhexlify(v["payload_hex"])
    try:
        messages.decode(payload, keys[v["key"]], v["topic"])
        got = "ok"
    except messages.MalformedMessage as e:
        got = e.code
    except Exception as e:  # the other ProtocolError types
        got = getattr(e, "code", "CRASH:" + repr(e))
    print("E", got, v["name"])
w = auth.ReplayWindow()
print("R", "".join(["1" if w.check(n) else "0" for n in d["replay"]["offered"]]))
