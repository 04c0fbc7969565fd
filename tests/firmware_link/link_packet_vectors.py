"""Byte-exact MQTT 3.1.1 packet vectors for firmware/mqtt/packets.py (CPython and MicroPython).

EXPECTED is written by hand from the 3.1.1 specification (section numbers in comments), not
produced by the encoder under test. run() evaluates every case and returns {name: text};
results are "hex" for encoders, a canonical tuple text for decoders, "E:<code>" for errors.
"""

import binascii

from firmware.mqtt import packets as mqtt


def _a(s):
    """hex of an ASCII string (keeps the expected packets readable)."""
    return binascii.hexlify(s.encode()).decode()


TOPIC_SUB = "hcp/1/down/dev-1/+"
TOPIC_WILL = "hcp/1/up/dev-1/status"

EXPECTED = {
    # 3.1: CONNECT, flags user|password|will retain|will QoS 1|will, clean=0, keepalive 60
    "connect_full": "1038" + "00044d51545404" + "ec" + "003c" + "0005" + _a("dev-1")
    + "0015" + _a(TOPIC_WILL) + "0003" + _a("off") + "0005" + _a("dev-1") + "0002" + _a("pw"),
    "connect_clean_min": "100d" + "00044d51545404" + "02" + "0000" + "0001" + _a("x"),
    "connect_user_only": "1014" + "00044d51545404" + "80" + "012c" + "0001" + _a("x") + "0005" + _a("dev-1"),
    "connect_will_q0": "1013" + "00044d51545404" + "04" + "000a" + "0001" + _a("x") + "0001" + _a("w")
    + "0001" + _a("z"),
    "connect_password_without_user": "E:ValueError",
    # 3.3: PUBLISH
    "publish_q0": "3007" + "0003" + _a("a/b") + _a("hi"),
    "publish_q0_retain": "3107" + "0003" + _a("a/b") + _a("hi"),
    "publish_q1": "3209" + "0003" + _a("a/b") + "000a" + _a("hi"),
    "publish_q1_retain": "3309" + "0003" + _a("a/b") + "000a" + _a("hi"),
    "publish_q1_dup": "3a09" + "0003" + _a("a/b") + "1234" + _a("hi"),
    "publish_q1_dup_retain_pid_ffff": "3b09" + "0003" + _a("a/b") + "ffff" + _a("hi"),
    "publish_q1_empty_payload": "3207" + "0003" + _a("a/b") + "0001",
    "publish_q0_with_pid": "E:ValueError",
    "publish_q1_pid0": "E:ValueError",
    "publish_q2_rejected_by_client": "E:ValueError",
    # 2.2.3: Remaining Length around the 1/2/3/4-byte boundaries (header only; body checked by len)
    "publish_rl_127": "307f|127",
    "publish_rl_128": "308001|128",
    "publish_rl_16383": "30ff7f|16383",
    "publish_rl_16384": "30808001|16384",
    "len_0": "00", "len_127": "7f", "len_128": "8001", "len_16383": "ff7f", "len_16384": "808001",
    "len_2097151": "ffff7f", "len_2097152": "80808001", "len_268435455": "ffffff7f",
    "len_268435456": "E:ValueError", "len_-1": "E:ValueError",
    # 3.4, 3.8, 3.12, 3.14
    "puback_10": "4002000a",
    "puback_ffff": "4002ffff",
    "subscribe_q1": "8217" + "0001" + "0012" + _a(TOPIC_SUB) + "01",
    "subscribe_q0_pid_258": "8217" + "0102" + "0012" + _a(TOPIC_SUB) + "00",
    "subscribe_pid0": "E:ValueError",
    "pingreq": "c000",
    "disconnect": "e000",
    # Decoding (what a broker sends). 3.2 CONNACK: every return code
    "d_connack_0": "CONNACK,False,0",
    "d_connack_0_sp": "CONNACK,True,0",
    "d_connack_1": "CONNACK,False,1",
    "d_connack_2": "CONNACK,False,2",
    "d_connack_3": "CONNACK,False,3",
    "d_connack_4": "CONNACK,False,4",
    "d_connack_5": "CONNACK,False,5",
    "d_connack_6_reserved": "CONNACK,False,6",
    "refused_1": "refused,1,CONNACK 1: unacceptable protocol version",
    "refused_2": "refused,2,CONNACK 2: identifier rejected",
    "refused_3": "refused,3,CONNACK 3: server unavailable",
    "refused_4": "refused,4,CONNACK 4: bad user name or password",
    "refused_5": "refused,5,CONNACK 5: not authorized",
    "refused_6": "refused,6,CONNACK 6: reserved code",
    "d_connack_bad_flags": "E:bad_flags",
    "d_connack_long": "E:bad_length",
    "d_connack_short": "E:bad_length",
    "d_connack_reserved_bits": "E:malformed",
    "d_connack_sp_with_refusal": "E:malformed",
    # 3.9 SUBACK
    "d_suback_q1": "SUBACK,1,[1]",
    "d_suback_q0_q2": "SUBACK,258,[0,2]",
    "d_suback_failure": "SUBACK,1,[128]",
    "d_suback_bad_code": "E:malformed",
    "d_suback_no_codes": "E:bad_length",
    "d_suback_bad_flags": "E:bad_flags",
    # 3.3 PUBLISH
    "d_publish_q0": "PUBLISH,a/b,6869,0,False,False,0",
    "d_publish_q1": "PUBLISH,a/b,6869,1,False,False,5",
    "d_publish_q1_dup_retain": "PUBLISH,a/b,6869,1,True,True,5",
    "d_publish_empty_payload": "PUBLISH,a/b,,0,False,False,0",
    "d_publish_utf8_topic": "PUBLISH,h\u00e9,01,0,False,False,0",
    "d_publish_q3": "E:bad_flags",
    "d_publish_q0_dup": "E:bad_flags",
    "d_publish_no_topic": "E:malformed",
    "d_publish_topic_overrun": "E:malformed",
    "d_publish_q1_no_pid": "E:malformed",
    "d_publish_pid0": "E:malformed",
    "d_publish_wildcard": "E:malformed",
    "d_publish_empty_topic": "E:malformed",
    "d_publish_bad_utf8": "E:malformed",
    # 3.4 PUBACK, 3.13 PINGRESP, 3.11 UNSUBACK
    "d_puback": "PUBACK,10",
    "d_puback_bad_flags": "E:bad_flags",
    "d_puback_short": "E:bad_length",
    "d_pingresp": "PINGRESP",
    "d_pingresp_long": "E:bad_length",
    "d_pingresp_bad_flags": "E:bad_flags",
    "d_unsuback": "UNSUBACK,7",
    # Packets a server never sends to a client
    "d_connect": "E:unexpected",
    "d_subscribe": "E:unexpected",
    "d_pingreq": "E:unexpected",
    "d_disconnect": "E:unexpected",
    "d_type0": "E:unexpected",
    "d_type15": "E:unexpected",
    # 2.2.3 framing: read_packet, the device's reader -> "first,body,complete,bytes read". A
    # stream that ends inside a packet is a closed connection; a packet over 4096 bytes is read
    # to its end (the stream stays in step) and comes back as its first 64 bytes, incomplete.
    "s_empty": "E:closed",
    "s_header_only": "E:closed",
    "s_length_cut": "E:closed",
    "s_body_cut": "E:closed",
    "s_pingresp_plus": "208,,True,2",
    "s_rl_16384": "48,64,False,16388",
    "s_rl_5_bytes": "E:bad_length",
    "s_rl_127": "48,127,True,129",
    "s_rl_128": "48,128,True,131",
    "s_rl_16383": "48,64,False,16386",
    "s_rl_4096": "48,4096,True,4099",
    "s_rl_4097": "48,64,False,4100",
}

_NAMES = {2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 9: "SUBACK", 11: "UNSUBACK", 13: "PINGRESP"}


def _hex(b):
    return binascii.hexlify(bytes(b)).decode()


def _fmt(p):
    out = [_NAMES.get(p[0], str(p[0]))]
    for x in p[1:]:
        if type(x) is bytes:
            out.append(_hex(x))
        elif type(x) is list:
            out.append("[" + ",".join([str(i) for i in x]) + "]")
        else:
            out.append(str(x))
    return ",".join(out)


def _h(s):
    return binascii.unhexlify(s.replace(" ", ""))


class _Stream:
    """A stream over fixed bytes that never waits: past its end, the peer has closed."""

    def __init__(self, b):
        self.b = b
        self.i = 0

    async def readexactly(self, n):
        if self.i + n > len(self.b):
            raise EOFError
        self.i += n
        return self.b[self.i - n:self.i]

    async def read(self, n):
        chunk = self.b[self.i:self.i + n]
        self.i += len(chunk)
        return chunk


def _read_packet(b):
    """mqtt.read_packet on b, run to its end without an event loop -> (packet, bytes read)."""
    s = _Stream(b)
    coro = mqtt.read_packet(s)
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value, s.i
    raise AssertionError("read_packet waited on a stream that never blocks")


def _dec(hexs):
    b = _h(hexs)
    (first, body, complete), used = _read_packet(b)
    if not complete or used != len(b):
        raise AssertionError("vector %s is not one whole packet" % hexs)
    return _fmt(mqtt.decode_packet(first, body))


def _rl(n):
    pkt = mqtt.publish_packet("t", b"\x55" * (n - 3))
    head = len(pkt) - n
    return _hex(pkt[:head]) + "|" + str(len(pkt) - head)


def _split(hexs):
    (first, body, complete), used = _read_packet(_h(hexs))
    return "%d,%s,%s,%d" % (first, _hex(body) if len(body) < 8 else str(len(body)), complete, used)


def _refused(rc):
    e = mqtt.connect_refused(rc)
    return "%s,%d,%s" % (e.code, e.rc, e.detail)


def cases():
    P = mqtt.publish_packet
    C = mqtt.connect_packet
    yield "connect_full", lambda: _hex(C("dev-1", 60, False, "dev-1", "pw", (TOPIC_WILL, b"off", 1, True)))
    yield "connect_clean_min", lambda: _hex(C("x", 0, True))
    yield "connect_user_only", lambda: _hex(C("x", 300, False, "dev-1"))
    yield "connect_will_q0", lambda: _hex(C("x", 10, False, None, None, ("w", b"z", 0, False)))
    yield "connect_password_without_user", lambda: _hex(C("x", 10, False, None, "pw"))
    yield "publish_q0", lambda: _hex(P("a/b", b"hi"))
    yield "publish_q0_retain", lambda: _hex(P("a/b", b"hi", 0, True))
    yield "publish_q1", lambda: _hex(P("a/b", b"hi", 1, False, False, 10))
    yield "publish_q1_retain", lambda: _hex(P("a/b", b"hi", 1, True, False, 10))
    yield "publish_q1_dup", lambda: _hex(P("a/b", b"hi", 1, False, True, 0x1234))
    yield "publish_q1_dup_retain_pid_ffff", lambda: _hex(P("a/b", b"hi", 1, True, True, 0xFFFF))
    yield "publish_q1_empty_payload", lambda: _hex(P("a/b", b"", 1, False, False, 1))
    yield "publish_q0_with_pid", lambda: _hex(P("a/b", b"hi", 0, False, False, 3))
    yield "publish_q1_pid0", lambda: _hex(P("a/b", b"hi", 1, False, False, 0))
    yield "publish_q2_rejected_by_client", lambda: _hex(P("a/b", b"hi", 3, False, False, 1))
    for n in (127, 128, 16383, 16384):
        yield "publish_rl_%d" % n, (lambda n=n: _rl(n))
    for n in (0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455, 268435456, -1):
        yield "len_%d" % n, (lambda n=n: _hex(mqtt.encode_length(n)))
    yield "puback_10", lambda: _hex(mqtt.puback_packet(10))
    yield "puback_ffff", lambda: _hex(mqtt.puback_packet(0xFFFF))
    yield "subscribe_q1", lambda: _hex(mqtt.subscribe_packet(1, TOPIC_SUB, 1))
    yield "subscribe_q0_pid_258", lambda: _hex(mqtt.subscribe_packet(258, TOPIC_SUB, 0))
    yield "subscribe_pid0", lambda: _hex(mqtt.subscribe_packet(0, TOPIC_SUB, 1))
    yield "pingreq", lambda: _hex(mqtt.PINGREQ_PACKET)
    yield "disconnect", lambda: _hex(mqtt.DISCONNECT_PACKET)
    yield "d_connack_0", lambda: _dec("20020000")
    yield "d_connack_0_sp", lambda: _dec("20020100")
    for rc in range(1, 7):
        name = "d_connack_%d" % rc + ("_reserved" if rc == 6 else "")
        yield name, (lambda rc=rc: _dec("200200%02x" % rc))
        yield "refused_%d" % rc, (lambda rc=rc: _refused(rc))
    yield "d_connack_bad_flags", lambda: _dec("21020000")
    yield "d_connack_long", lambda: _dec("2003000000")
    yield "d_connack_short", lambda: _dec("200100")
    yield "d_connack_reserved_bits", lambda: _dec("20020200")
    yield "d_connack_sp_with_refusal", lambda: _dec("20020105")
    yield "d_suback_q1", lambda: _dec("9003000101")
    yield "d_suback_q0_q2", lambda: _dec("900401020002")
    yield "d_suback_failure", lambda: _dec("9003000180")
    yield "d_suback_bad_code", lambda: _dec("9003000103")
    yield "d_suback_no_codes", lambda: _dec("90020001")
    yield "d_suback_bad_flags", lambda: _dec("9203000101")
    yield "d_publish_q0", lambda: _dec("3007" + "0003" + _a("a/b") + "6869")
    yield "d_publish_q1", lambda: _dec("3209" + "0003" + _a("a/b") + "0005" + "6869")
    yield "d_publish_q1_dup_retain", lambda: _dec("3b09" + "0003" + _a("a/b") + "0005" + "6869")
    yield "d_publish_empty_payload", lambda: _dec("3005" + "0003" + _a("a/b"))
    yield "d_publish_utf8_topic", lambda: _dec("3006" + "0003" + "68c3a9" + "01")
    yield "d_publish_q3", lambda: _dec("3607" + "0003" + _a("a/b") + "6869")
    yield "d_publish_q0_dup", lambda: _dec("3807" + "0003" + _a("a/b") + "6869")
    yield "d_publish_no_topic", lambda: _dec("300100")
    yield "d_publish_topic_overrun", lambda: _dec("3003" + "0005" + "61")
    yield "d_publish_q1_no_pid", lambda: _dec("3206" + "0003" + _a("a/b") + "00")
    yield "d_publish_pid0", lambda: _dec("3207" + "0003" + _a("a/b") + "0000")
    yield "d_publish_wildcard", lambda: _dec("3005" + "0003" + _a("a/#"))
    yield "d_publish_empty_topic", lambda: _dec("3004" + "0000" + "6869")
    yield "d_publish_bad_utf8", lambda: _dec("3004" + "0002" + "fffe")
    yield "d_puback", lambda: _dec("4002000a")
    yield "d_puback_bad_flags", lambda: _dec("42020001")
    yield "d_puback_short", lambda: _dec("400100")
    yield "d_pingresp", lambda: _dec("d000")
    yield "d_pingresp_long", lambda: _dec("d00100")
    yield "d_pingresp_bad_flags", lambda: _dec("d100")
    yield "d_unsuback", lambda: _dec("b0020007")
    yield "d_connect", lambda: _dec("100d00044d5154540402000000" + "0178")
    yield "d_subscribe", lambda: _dec("8217" + "0001" + "0012" + _a(TOPIC_SUB) + "01")
    yield "d_pingreq", lambda: _dec("c000")
    yield "d_disconnect", lambda: _dec("e000")
    yield "d_type0", lambda: _dec("0000")
    yield "d_type15", lambda: _dec("f000")
    yield "s_empty", lambda: _split("")
    yield "s_header_only", lambda: _split("30")
    yield "s_length_cut", lambda: _split("3080")
    yield "s_body_cut", lambda: _split("30050003")
    yield "s_pingresp_plus", lambda: _split("d000d000")
    yield "s_rl_16384", lambda: _split("30808001" + "00" * 16384)
    yield "s_rl_5_bytes", lambda: _split("30ffffffff7f")
    yield "s_rl_127", lambda: _split("307f" + "00" * 127)
    yield "s_rl_128", lambda: _split("308001" + "00" * 128)
    yield "s_rl_16383", lambda: _split("30ff7f" + "00" * 16383)
    yield "s_rl_4096", lambda: _split("308020" + "00" * 4096)
    yield "s_rl_4097", lambda: _split("308120" + "00" * 4097)


def run():
    out = {}
    for name, fn in cases():
        try:
            out[name] = fn()
        except mqtt.MQTTError as e:
            out[name] = "E:" + e.code
        except ValueError:
            out[name] = "E:ValueError"
    return out
