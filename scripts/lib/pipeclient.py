#!/usr/bin/env python3
# pipeclient.py PORT CONNS ROUNDS DEPTH [PATH]: send ROUNDS batches of DEPTH pipelined GETs on each of CONNS connections; check answers
import socket, sys
port, conns, rounds, depth = map(int, sys.argv[1:5])
path = sys.argv[5] if len(sys.argv) > 5 else "/plaintext"
req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").encode() * depth
ss = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
total = 0
for r in range(rounds):
    for s in ss:
        s.sendall(req)
    for s in ss:
        buf = b""
        while buf.count(b"Hello, World!") < depth:
            d = s.recv(65536)
            if not d: raise SystemExit("closed")
            buf += d
        total += depth
print(total)
