#!/usr/bin/env python3
"""Power cuts under flash-sale's journal, simulated with LazyFS (not part of CI).

LazyFS (github.com/dsrhaslab/lazyfs) is a FUSE file system that keeps written data in its
own cache until it is synced, and drops every unsynced byte on `lazyfs::clear-cache`: what
a power cut does to the page cache. Each round: start `flash-sale serve` with its data dir
on the LazyFS mount, buy from several threads, SIGKILL the server mid-crowd (nothing more
is written or answered; what it wrote but did not sync is still in LazyFS's cache), cut the
power (clear-cache), start it again on what is left, and check that every order answered
200 before the kill is there (GET /orders/{id}), and that sold counts no more than the
buys opened. (Freezing the server with SIGSTOP before the cut instead can leave LazyFS's
clear-cache waiting on a FUSE request of the frozen process.)

  scripts/lazyfs-power-cut.py MOUNT FIFO DONE_FIFO [ROUNDS] [BINARY]

MOUNT: a LazyFS mount; FIFO / DONE_FIFO: its `fifo_path` / `fifo_path_completed`.
RINGCORE_DRIVER picks the driver as usual; FLASH_SALE_ARGS adds serve options (such as
`--journal-prealloc 65536` for frequent growths, `--journal-sync fdatasync`).
"""
import json, http.client, os, random, signal, subprocess, sys, threading, time, uuid

mount, fifo, done = sys.argv[1], sys.argv[2], sys.argv[3]
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
binary = sys.argv[5] if len(sys.argv) > 5 else "target/debug/flash-sale"
extra = os.environ.get("FLASH_SALE_ARGS", "").split()


def free_port():
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    return p


def start(data):
    port = free_port()
    log = open(data + ".log", "ab")
    p = subprocess.Popen([binary, "serve", "--addr", f"127.0.0.1:{port}", "--cores", "2",
                          "--data-dir", data, "--user-rate", "1000"] + extra,
                         stdout=log, stderr=log)
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz"); c.getresponse().read()
            return p, port
        except OSError:
            if p.poll() is not None:
                sys.exit(f"serve exited {p.returncode}; see {data}.log")
            time.sleep(0.05)
    sys.exit("serve did not start")


def call(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request(method, path, body, {"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, r.read()


def clear_cache():
    def late(*_):
        sys.exit("LazyFS did not report the clear-cache within 30 s")
    signal.signal(signal.SIGALRM, late)
    signal.alarm(30)
    with open(fifo, "w") as f:
        f.write("lazyfs::clear-cache\n")
    with open(done) as f:
        assert "finished" in f.readline()
    signal.alarm(0)


failures = 0
for rnd in range(rounds):
    data = os.path.join(mount, f"sale-{uuid.uuid4().hex[:8]}")
    srv, port = start(data)
    assert call(port, "PUT", "/items/gift", json.dumps({"stock": 10**6}))[0] == 201
    acked, opened, stop = {}, [0], threading.Event()
    lock = threading.Lock()

    def buyer(t):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        i = 0
        while not stop.is_set():
            user = f"r{rnd}-t{t}-{i}"; i += 1
            with lock:
                opened[0] += 1
            try:
                c.request("POST", "/items/gift/buy", json.dumps({"user": user}),
                          {"Content-Type": "application/json"})
                r = c.getresponse(); body = r.read()
            except OSError:
                return
            if r.status == 200:
                with lock:
                    acked[user] = json.loads(body)["order"]

    threads = [threading.Thread(target=buyer, args=(t,)) for t in range(8)]
    for t in threads: t.start()
    time.sleep(random.uniform(1.0, 3.0))
    srv.send_signal(signal.SIGKILL); srv.wait()   # nothing more is written or answered
    time.sleep(0.2)
    with lock:
        seen = dict(acked); n_open = opened[0]
    clear_cache()                         # the power cut: what it left unsynced is gone
    stop.set()
    for t in threads: t.join()

    srv, port = start(data)
    lost = [u for u, o in seen.items() if call(port, "GET", f"/orders/{o}")[0] != 200]
    st, body = call(port, "GET", "/items/gift")
    sold = json.loads(body)["sold"]
    ok = not lost and len(seen) <= sold <= n_open
    failures += not ok
    print(f"round {rnd}: {len(seen)} acknowledged before the cut, {n_open} buys opened, "
          f"sold after restart {sold}, acknowledged but missing {len(lost)}: "
          f"{'ok' if ok else 'FAIL'}", flush=True)
    srv.send_signal(signal.SIGTERM); srv.wait()
sys.exit(1 if failures else 0)
