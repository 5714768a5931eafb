#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into tests/fuzz/corpus/<target>/ (committed).

Hand-made valid and edge inputs, in each target's input layout (see the comment at the top of
tests/fuzz/<target>.cpp). Protobuf messages are encoded here by hand (field numbers from
proto/*.proto) so no protobuf Python package is needed. Re-run after changing a layout:
    python3 tests/fuzz/make_corpus.py
"""
import hashlib
import hmac
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")


# ---- protobuf wire format -------------------------------------------------------------------
def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(field, n):
    return varint(field << 3) + varint(n)


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def frame(body):
    return struct.pack(">I", len(body)) + body


def u64(n):
    return struct.pack("<Q", n & ((1 << 64) - 1))


# ---- client frames (proto/client.proto) -----------------------------------------------------
TOKEN = "A" * 20 + "b-_9" + "Z" * 19  # 43 base64url characters


def login(token=TOKEN, device="phone-1", version=1, client="imclient/0.1.0"):
    return f_bytes(1, token) + f_bytes(2, device) + f_bytes(3, client) + f_varint(4, version)


def env(body_field, body, request_id=1):
    return f_varint(1, request_id) + f_bytes(body_field, body)


def conv(a, b):
    lo, hi = min(a, b), max(a, b)
    return lo << 32 | hi


CLIENT_BODIES = [
    env(10, login()),
    env(10, login(version=2)),
    env(10, login(device="")),
    env(10, login(device="bad device")),
    env(10, login(device="d" * 64)),
    env(10, login(device="d" * 65)),
    env(10, login(token="short")),
    env(10, login(token=TOKEN[:-1] + "=")),
    env(12, f_varint(1, 1_700_000_000_000)),
    env(14, f_varint(1, 7) + f_bytes(2, b"\x01" * 16) + f_varint(3, 1) + f_varint(4, 1) + f_bytes(5, "hello")),
    env(14, f_varint(1, 5)),  # to yourself when the user is 5
    env(14, f_varint(1, 1 << 40)),
    env(14, f_varint(1, 0)),
    env(14, f_varint(1, 7) + f_varint(4, 2) + f_bytes(6, f_varint(1, 9) + f_bytes(2, "a.txt") + f_varint(3, 5))),
    env(17, f_varint(1, conv(5, 7)) + f_varint(2, 2) + f_varint(3, 10)),
    env(17, f_varint(1, conv(6, 7)) + f_varint(2, 1) + f_varint(3, 10)),
    env(17, f_varint(1, (1 << 64) - 1)),
    env(19, f_varint(1, 0) + f_varint(2, 50)),
    env(21, f_varint(1, conv(5, 7)) + f_varint(2, 0) + f_varint(4, 100)),
    env(21, f_varint(1, conv(7, 5) ^ 1)),
    env(24, f_varint(1, 7)),
    env(24, f_varint(1, 5)),
    env(16, f_varint(1, 1)),  # Deliver: server-only
    env(27, f_varint(1, 1)),  # Kick: server-only
    f_varint(1, 9),  # no body
    f_varint(1, 1) + f_bytes(99, "unknown field"),
    # groups (issue 15): a send, typing, receipt, sync and ReadBy naming a group; a group send
    # that also names a peer; GroupChange (im-rest -> transfer only)
    env(14, f_bytes(2, b"\x02" * 16) + f_varint(3, 1) + f_varint(4, 1) + f_bytes(5, "hi group") + f_varint(8, 12)),
    env(14, f_varint(1, 7) + f_bytes(2, b"\x03" * 16) + f_varint(3, 1) + f_varint(8, 12)),
    env(14, f_varint(8, 1 << 31)),
    env(24, f_varint(2, 12)),
    env(17, f_varint(1, 12) + f_varint(2, 2) + f_varint(3, 3)),
    env(21, f_varint(1, 12) + f_varint(2, 0)),
    env(29, f_varint(1, 12) + f_varint(2, 3)),
    env(29, f_varint(1, conv(5, 7)) + f_varint(2, 3)),
    env(31, f_varint(1, 12) + f_varint(2, 2) + f_varint(3, 9)),
    env(10, login(device="caf\xc3\xa9")),
    env(10, f_bytes(2, b"\xff\xfe")),  # invalid UTF-8 in a string field
]


def client_envelope():
    seeds = []
    for i, body in enumerate(CLIENT_BODIES):
        for state in (0, 2 | 0x80, 1):  # awaiting_login, active (valid user), authenticating
            user = 5 if state & 0x80 else i
            seeds.append(bytes([state]) + u64(user) + body)
    seeds.append(bytes([2]) + u64(0) + CLIENT_BODIES[9])  # active with an impossible user 0
    seeds.append(bytes([3]) + u64(5) + CLIENT_BODIES[8])  # closing
    return seeds


# ---- link frames (proto/internal.proto) ------------------------------------------------------
SECRET = b"fuzz-cluster-secret-0123456789"  # tests/fuzz/link_frame_fuzz.cpp
NOW = 1_700_000_000_000


def session_ref(user, epoch, device="phone"):
    return f_varint(1, user) + f_bytes(2, device) + f_varint(3, epoch)


def hello(connector="connector-1", epoch=1, nonce=b"N" * 16, time_ms=NOW, mac=b"sign", address="127.0.0.1:9000"):
    return (f_bytes(1, connector) + f_varint(2, epoch) + f_bytes(3, address) + f_bytes(4, nonce) +
            f_varint(5, time_ms) + f_bytes(6, mac))


def link(body_field, body, request_id=0):
    return frame(f_varint(1, request_id) + f_bytes(body_field, body))


def sync(*sessions):
    return link(21, b"".join(f_bytes(1, s) for s in sessions))


def event(user, epoch, online):
    return link(15, f_bytes(1, session_ref(user, epoch)) + f_varint(2, 1 if online else 0))


def link_frame():
    h = link(10, hello())
    h2 = link(10, hello(nonce=b"M" * 16, connector="connector-2"))
    seeds = [
        h,
        h + sync(session_ref(5, 1), session_ref(7, 2), session_ref(5, 3)),
        h + sync(session_ref(5, 1)) + event(9, 4, True) + event(5, 1, False) + event(9, 4, False),
        h + event(5, 1, True) + event(5, 1, True) + sync() + event(5, 1, False),
        h + sync(session_ref(5, 1), session_ref(5, 1)) + sync(session_ref(6, 1)),
        h + h,  # a second Hello closes the link
        h + event(5, 1, True) + h2 + event(5, 1, True) + event(6, 2, True),
        h + event(5, 1, True) + h,  # replayed nonce on the next link
        link(10, hello(mac=b"\x00" * 32)),  # bad MAC
        link(10, hello(nonce=b"short")),
        link(10, hello(time_ms=NOW - 61_000)),  # stale
        link(10, hello(time_ms=NOW + 59_000), request_id=120_000),  # the clock moves forward
        event(5, 1, True) + h,  # not Hello first
        link(19, f_varint(1, 5)) + h,
        h + link(11, f_bytes(1, "transfer-0") + f_varint(2, 7) + f_varint(3, 1024) +
                 f_bytes(4, f_varint(1, 0) + f_varint(2, 1023) + f_varint(3, 7) + f_varint(4, 1)) + f_bytes(5, "sign")),
        h + link(11, f_bytes(1, "transfer-0") + f_bytes(5, b"\x01" * 32)),
        h + link(16, f_bytes(1, b"\x00" * 32) + f_bytes(2, "phone"), request_id=3),
        h + link(12, f_bytes(1, session_ref(5, 1)) + f_bytes(2, env(14, f_varint(1, 7)))),
        h + link(19, f_varint(1, NOW)),
        h + struct.pack(">I", 0),  # zero-length frame
        h + struct.pack(">I", (16 << 20) + 1),  # oversize
        h + frame(b"\xff\xff\xff"),  # unparsable
        h + event(5, 1, True)[:-2],  # truncated
    ]
    # A valid HMAC computed here too (the harness's "sign" does the same).
    def msg(*fields):
        m = b"im-link-hello/1|"
        for f in fields:
            m += str(len(f)).encode() + b":" + f + b"|"
        return m
    mac = hmac.new(SECRET, msg(b"c", b"1", str(NOW).encode(), b"K" * 16), hashlib.sha256).digest()
    seeds.append(link(10, hello(connector="c", nonce=b"K" * 16, mac=mac)) + event(3, 3, True))
    return seeds


# ---- frame codec: [max choice][read seed][stream] -------------------------------------------
def frame_codec():
    stream = b"".join(frame(b) for b in CLIENT_BODIES[:6])
    links = b"".join(link_frame()[:3])
    seeds = []
    for max_choice in range(8):
        seeds.append(bytes([max_choice, 0]) + stream)
    seeds += [
        bytes([6, 3]) + stream,
        bytes([6, 4]) + links,
        bytes([7, 9]) + links,
        bytes([6, 1]) + frame(b"x") * 20,
        bytes([6, 2]) + struct.pack(">I", 0),
        bytes([6, 2]) + struct.pack(">I", 0xFFFFFFFF) + b"xx",
        bytes([3, 5]) + frame(b"y" * 16) + frame(b"z" * 17),
        bytes([6, 7]) + stream[:-1],
        bytes([6, 8]) + b"\x00\x00",
        bytes([6, 8]) + frame(b""),
        bytes([6, 11]) + frame(env(12, f_varint(1, 1))) * 3,
    ]
    return seeds


# ---- HTTP requests (rest-api) ----------------------------------------------------------------
def req(method, target, body=b"", headers=None, version="1.1"):
    h = {"Host": "127.0.0.1"}
    if body:
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    head = f"{method} {target} HTTP/{version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode() + (body if isinstance(body, bytes) else body.encode())


AUTH = {"Authorization": "Bearer " + TOKEN}


def rest_request():
    seeds = [
        req("POST", "/v1/users", '{"username":"Alice","password":"correct horse","display_name":"Alice A."}'),
        req("POST", "/v1/users", '{"username":"al","password":"x"}'),
        req("POST", "/v1/users", '{"username":"*)(uid=*","password":12345678}'),
        req("POST", "/v1/sessions", '{"username":"alice","password":"pw","device_id":"phone-1"}'),
        req("POST", "/v1/sessions", '{"username":"a\\u0000b","password":"pw","device_id":"x y"}'),
        req("POST", "/v1/sessions", "[1,2,3]"),
        req("POST", "/v1/sessions", "{", headers={"Content-Type": "application/json; charset=utf-8"}),
        req("POST", "/v1/sessions", '{"a":1}', headers={"Content-Type": "text/plain"}),
        req("DELETE", "/v1/sessions/current", headers=AUTH),
        req("GET", "/v1/sessions", headers=AUTH),
        req("DELETE", "/v1/sessions/12", headers=AUTH),
        req("GET", "/v1/users/me", headers=AUTH),
        req("GET", "/v1/users/42", headers={"Authorization": "bearer  " + TOKEN + "  "}),
        req("GET", "/v1/users/0042/", headers=AUTH),
        req("GET", "/v1/users?username=Bob", headers=AUTH),
        req("POST", "/v1/users/me/password", '{"old":"a","new":"bbbbbbbb"}', headers=AUTH),
        req("GET", "/v1/conversations?cursor=0&limit=20", headers=AUTH),
        req("GET", "/v1/conversations/21474836487/messages?after_seq=1&limit=50", headers=AUTH),
        req("GET", "/v1/conversations/1/messages?before_seq=x", headers=AUTH),
        req("POST", "/v1/conversations/21474836487/read", '{"up_to_seq":5}', headers=AUTH),
        req("POST", "/v1/conversations/21474836487/read", '{"up_to_seq":-1}', headers=AUTH),
        req("GET", "/v1/files/7", headers=dict(AUTH, Range="bytes=0-99")),
        req("POST", "/v1/files?name=..%2F..%2Fetc%2Fpasswd", "abc", headers=dict(AUTH, **{"Content-Type": "image/PNG"})),
        req("POST", "/v1/files/?name=a.txt", headers=dict(AUTH, **{"Content-Length": "999999999999"})),
        req("POST", "/v1/friends/requests", '{"to_user_id":7,"message":"hi\\nthere"}', headers=AUTH),
        req("POST", "/v1/friends/requests", '{"to_user_id":"7","message":"\\u0001"}', headers=AUTH),
        req("POST", "/v1/friends/requests", '{"to_user_id":4294967296}', headers=AUTH),
        req("GET", "/v1/friends/requests?direction=out", headers=AUTH),
        req("POST", "/v1/friends/requests/3/accept", headers=AUTH),
        req("POST", "/v1/friends/requests/3/decline", headers=AUTH),
        req("POST", "/v1/friends/requests/3/cancel", headers=AUTH),
        req("GET", "/v1/friends", headers=AUTH),
        req("GET", "/v1/users/me/presence", headers=AUTH),
        req("DELETE", "/v1/friends/9", headers=AUTH),
        req("POST", "/v1/blocks", '{"user_id":9}', headers=AUTH),
        req("DELETE", "/v1/blocks/9", headers=AUTH),
        req("GET", "/v1/blocks", headers=AUTH),
        req("PUT", "/v1/users/me"),  # 405
        req("POST", "/v1/sessions/current"),  # 405
        req("GET", "/v1/nowhere"),
        req("GET", "/healthz"),
        req("GET", "//v1//users//me", headers=AUTH),
        req("GET", "/v1/users/%zz"),
        req("GET", "relative"),
        req("GET", "/v1/users/me?%"),
        req("GET", "/v1/users/me", version="1.0"),
        req("GET", "/v1/users/me", headers={"Connection": "close"}) + req("GET", "/v1/blocks"),
        req("GET", "/v1/friends", headers=AUTH) + req("GET", "/v1/blocks", headers=AUTH) + req("GET", "/healthz"),
        b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\n{\"use\r\n1a\r\nrname\":\"bob\",\"password\":1}\r\n0\r\n\r\n",
        b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n0123456789",
        b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n{}",
        b"GET /v1/users/me HTTP/1.1\r\n" + b"X: " + b"y" * 17000 + b"\r\n\r\n",
        b"GET /v1/users/me HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\n",
    ]
    return seeds


# ---- LDAP escaping: the username bytes ------------------------------------------------------
def ldap_escape():
    return [s.encode() if isinstance(s, str) else s for s in [
        "alice", "", " ", "  lead and trail  ", "#hash", "a#b", "*", "*)(uid=*))(|(uid=*", "(", ")", "\\",
        "a\\2ab", "a,b=c+d", '"quoted"', "<tag>", "semi;colon", "ou=admins,dc=im", "Ren\u00e9e", "\u65e5\u672c",
        "\U0001F600", b"nul\x00byte", b"\xff\xfe", b"\xc3", "tab\tnew\nline", "=", "+", "uid=admin",
        "trailing\\", "x" * 256, "a b", " #", "\u00a0nbsp",
    ]]


# ---- Range header and file names: [8 bytes size][value] --------------------------------------
def range_header():
    values = [
        "bytes=0-99", "bytes=0-", "bytes=-500", "bytes=-0", "bytes=100-50", "bytes=5-5", "bytes=999-",
        "bytes=0-0,5-9", "bytes =0-1", " bytes=1-2 ", "bytes= 1 - 2 ", "items=0-1", "bytes=", "bytes=-",
        "bytes=18446744073709551615-", "bytes=-18446744073709551615", "bytes=0-99999999999999999999",
        "bytes=+1-2", "bytes=0x10-", "report.pdf", "../../etc/passwd", "C:\\dir\\file.txt", ".", "..", "",
        "caf\u00e9 \u65e5\u672c.txt", "a\u0085b", "x" * 300, "text/plain; charset=utf-8", "IMAGE/PNG",
        "application/vnd.api+json", "multipart/form-data; boundary=x", "a/b/c", "/", "type/",
        'quo"te\\.txt', "100%.txt", "line\r\nInjected: yes",
    ]
    seeds = []
    for i, v in enumerate(values):
        size = [0, 1, 100, 1000, 1 << 30][i % 5]
        seeds.append(u64(size) + v.encode())
    seeds.append(u64((1 << 64) - 1) + b"bytes=0-")
    seeds.append(u64(1 << 63) + b"bytes=-1")
    seeds.append(u64(100) + b"\xff\xfe.txt")
    return seeds


def main():
    targets = {
        "frame_codec_fuzz": frame_codec(),
        "client_envelope_fuzz": client_envelope(),
        "link_frame_fuzz": link_frame(),
        "rest_request_fuzz": rest_request(),
        "ldap_escape_fuzz": ldap_escape(),
        "range_header_fuzz": range_header(),
    }
    for name, seeds in targets.items():
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for seed in seeds:
            with open(os.path.join(d, hashlib.sha1(seed).hexdigest()[:16]), "wb") as f:
                f.write(seed)
        print(f"{name}: {len(set(seeds))} seeds")


if __name__ == "__main__":
    main()
