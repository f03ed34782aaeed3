#!/usr/bin/env python3
"""The code footprint per request of a callgrind run (recorded with --dump-instr=yes).

    code-footprint.py CALLGRIND_OUT REQUESTS [TOP]

Prints how many distinct 64-byte lines of code (the unit an instruction cache holds) the
run executed at least half as often as it answered requests: the code a request runs
through, startup and rare paths left out. A server woken from idle for each request (low
load) finds little of it still in its core's L1 code cache (32 KiB), after the kernel's own
path in between, so the lines it needs, not only its instruction count, set how long the
request takes. With TOP, also the TOP functions with the most such lines (a line shared by two
functions counts for both there, once in the total).
"""
import collections
import re
import sys


def parse(path):
    """Self cost per (object, instruction address), and the function of each address."""
    cost = collections.Counter()
    func_of = {}
    names = {"ob": {}, "fn": {}}
    obj = fn = None
    addr = line = 0
    after_calls = False

    def pos(tok, prev):
        if tok == "*":
            return prev
        if tok[0] in "+-":
            return prev + int(tok, 0)
        return int(tok, 0)

    with open(path) as f:
        for raw in f:
            m = re.match(r"^(c?)(ob|fl|fi|fe|fn)=\((\d+)\)(?: (.*))?$", raw.rstrip("\n"))
            if m:
                called, kind, ident, name = m.groups()
                if kind in names:
                    if name:
                        names[kind][ident] = name
                    if not called:
                        if kind == "ob":
                            obj = names["ob"].get(ident)
                        else:
                            fn = names["fn"].get(ident)
                continue
            if raw.startswith("calls="):
                after_calls = True
                continue
            if raw[:1].isdigit() or raw[:1] in "+-*":
                parts = raw.split()
                addr, line = pos(parts[0], addr), pos(parts[1], line)
                if after_calls:
                    # The cost of the call on the line after `calls=` is the callee's.
                    after_calls = False
                    continue
                cost[(obj, addr)] += int(parts[2])
                func_of[(obj, addr)] = fn
    return cost, func_of


def main():
    path, requests = sys.argv[1], float(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    cost, func_of = parse(path)
    # An instruction's self cost (Ir) is how often it ran; a line ran as often as its most
    # run instruction.
    hot_instr = [(obj, addr) for (obj, addr), c in cost.items() if c / requests >= 0.5]
    hot = {(obj, addr // 64) for obj, addr in hot_instr}
    funcs = collections.defaultdict(set)
    for obj, addr in hot_instr:
        funcs[func_of[(obj, addr)]].add((obj, addr // 64))
    print(f"{len(hot)} code lines ({len(hot) * 64 // 1024} KiB)")
    for fn, lines in sorted(funcs.items(), key=lambda kv: -len(kv[1]))[:top]:
        print(f"  {len(lines):4d}  {fn}")


if __name__ == "__main__":
    main()
