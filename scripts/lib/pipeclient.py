#!/usr/bin/env python3
# pipeclient.py PORT CONNS ROUNDS DEPTH [PATH [browser]]: send ROUNDS batches of DEPTH pipelined GETs on each of CONNS connections; check answers
# With "browser", each request carries the fields a browser sends (a head of 490 bytes).
import socket, sys
port, conns, rounds, depth = map(int, sys.argv[1:5])
path = sys.argv[5] if len(sys.argv) > 5 else "/plaintext"
fields = f"Host: 127.0.0.1:{port}\r\n"
if len(sys.argv) > 6 and sys.argv[6] == "browser":
    fields += (
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n"
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        "Accept-Language: en-US,en;q=0.5\r\n"
        "Accept-Encoding: gzip, deflate, br, zstd\r\n"
        "Connection: keep-alive\r\n"
        "Cookie: session=4f2a9c1e8b7d6a5f3e2d1c0b9a8f7e6d; theme=dark\r\n"
        "Upgrade-Insecure-Requests: 1\r\n"
        "Sec-Fetch-Dest: document\r\n"
        "Sec-Fetch-Mode: navigate\r\n"
        "Sec-Fetch-Site: none\r\n"
        "Priority: u=0, i\r\n"
    )
req = (f"GET {path} HTTP/1.1\r\n{fields}\r\n").encode() * depth
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
