#!/usr/bin/env python3
"""Reads a `ringcore-load --timeline FILE` CSV and says where the slow requests are.

Usage: scripts/timeline-report.py FILE [--window-ms 10] [--slow-factor 10]

Prints p50/p99/p99.9/max of the latencies, the share of requests slower than
SLOW_FACTOR x the median, and whether those cluster in time: the requests are grouped in
windows of WINDOW_MS by scheduled send time, a window whose max latency is above the slow
threshold is a stall window, adjacent stall windows make one stall, and the spacing between
stalls is summed up (a steady spacing, e.g. ~1000 ms, points at a periodic task such as the
per-second Date refresh). Python 3 standard library only.
"""

import argparse
import csv
import statistics
import sys


def pct(sorted_vals, q):
    """Nearest-rank percentile of an ascending list (q in 0..1)."""
    if not sorted_vals:
        return 0
    i = max(0, min(len(sorted_vals) - 1, int(-(-q * len(sorted_vals) // 1)) - 1))
    return sorted_vals[i]


def load(path):
    rows = []
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r, None)
        if header is None or header[:2] != ["offset_us", "latency_us"]:
            sys.exit(f"{path}: not a ringcore-load timeline (header {header})")
        for line in r:
            if line:
                rows.append((int(line[0]), int(line[1])))
    return rows


def stalls(rows, window_us, threshold):
    """Stall episodes: (start_us, end_us, max_latency_us, slow requests), by send time."""
    per_window = {}
    for off, lat in rows:
        w = off // window_us
        mx, slow = per_window.get(w, (0, 0))
        per_window[w] = (max(mx, lat), slow + (lat > threshold))
    episodes = []
    for w in sorted(per_window):
        mx, slow = per_window[w]
        if mx <= threshold:
            continue
        if episodes and episodes[-1][1] == w * window_us:
            s, _, m, n = episodes[-1]
            episodes[-1] = (s, (w + 1) * window_us, max(m, mx), n + slow)
        else:
            episodes.append((w * window_us, (w + 1) * window_us, mx, slow))
    return per_window, episodes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--window-ms", type=float, default=10.0)
    ap.add_argument("--slow-factor", type=float, default=10.0)
    a = ap.parse_args()
    rows = load(a.file)
    if not rows:
        sys.exit(f"{a.file}: no requests")
    lats = sorted(lat for _, lat in rows)
    p50 = pct(lats, 0.50)
    threshold = max(1, p50) * a.slow_factor
    slow = sum(1 for v in lats if v > threshold)
    span_s = (rows[-1][0] - rows[0][0]) / 1e6 if len(rows) > 1 else 0.0
    print(f"{a.file}: {len(rows)} requests over {span_s:.2f} s of send times")
    print(f"latency us: p50 {p50}  p99 {pct(lats, 0.99)}  p99.9 {pct(lats, 0.999)}  max {lats[-1]}")
    print(f"slow (> {a.slow_factor:g} x median = {threshold:.0f} us): {slow} = {100.0 * slow / len(lats):.3f}%")
    window_us = max(1, int(a.window_ms * 1000))
    per_window, eps = stalls(rows, window_us, threshold)
    print(f"{a.window_ms:g}-ms windows: {len(per_window)}, with a slow request: "
          f"{sum(1 for m, _ in per_window.values() if m > threshold)}, stalls (adjacent windows merged): {len(eps)}")
    if not eps:
        print("no stalls: the slow requests, if any, do not cluster")
        return
    stalled_ms = sum(e - s for s, e, *_ in eps) / 1000
    print(f"time in stalls: {stalled_ms:.0f} ms of {len(per_window) * window_us / 1000:.0f} ms "
          f"({100.0 * stalled_ms * 1000 / (len(per_window) * window_us):.2f}%) holds all {slow} slow requests")
    for s, e, m, n in eps[:20]:
        print(f"  stall at {s / 1000:.1f}-{e / 1000:.1f} ms: max {m} us, {n} slow")
    if len(eps) > 20:
        print(f"  ... {len(eps) - 20} more")
    if len(eps) >= 3:
        gaps = [(eps[i + 1][0] - eps[i][0]) / 1000 for i in range(len(eps) - 1)]
        med = statistics.median(gaps)
        spread = statistics.pstdev(gaps) / med if med > 0 else float("inf")
        verdict = "periodic" if spread < 0.2 else "irregular"
        print(f"stall spacing ms: median {med:.1f}  min {min(gaps):.1f}  max {max(gaps):.1f}  "
              f"(stdev/median {spread:.2f}: {verdict})")
    else:
        print("stall spacing: too few stalls to say")


if __name__ == "__main__":
    main()
