#!/usr/bin/env python3
"""Where the CPU of one profiled server goes, from `perf script` output.

Usage: perf script -i perf.data | perf_summary.py [US_PER_REQUEST] > summary.md

Each sample's stack is read leaf first. "self" charges a sample to the
category of the first frame, from the leaf up, that matches one (generic
frames such as `core::ptr::drop_in_place` or `Option::map` inlined from
std charge their caller; in CATEGORIES order when several match); "total"
charges it to every category that matches any frame of its stack (so totals
overlap). With US_PER_REQUEST (the server's CPU per request, measured
without perf), each share is also given in µs per request. Also writes the folded
stacks (flamegraph input) to the path in $FOLDED when set.
"""

import collections
import os
import re
import sys

# (category, regex on a frame's symbol). First match wins for "self".
CATEGORIES = [
    ("syscalls and kernel (network stack, epoll, scheduler)", r"^\[k\]|entry_SYSCALL|__x64_sys|\[kernel|_raw_spin|tcp_|ip_|sock_|epoll|__schedule"),
    ("libc syscall wrappers (send/recv/epoll_wait/writev)", r"^(__libc_|__GI___libc_|__send|__recv|epoll_wait|writev|__writev|__libc_write|write|read|recv|send|syscall)$"),
    ("allocation (malloc/free/realloc)", r"malloc|free|realloc|_int_|cfree|tcache|arena_|__rust_alloc|__rust_dealloc|__rust_realloc|alloc::alloc"),
    ("memcpy/memmove/memset", r"mem(cpy|move|set|cmp)|__memcpy|__memmove"),
    ("access log and tracing (formatting, subscriber, write)", r"tracing_subscriber|tracing_core|tracing::|access_log|core::fmt|<.* as core::fmt"),
    ("hyper HTTP/1 parsing and encoding (server and client)", r"hyper::proto|httparse|hyper::headers|http::header|HeaderMap|HeaderName|HeaderValue"),
    ("upstream client and pool (hyper client, pool; hyper-util legacy for https)", r"hyper_util::client|hyper::client|pool::|Checkout|PoolClient|want::"),
    ("request id", r"request_id|uuid|getrandom|rand::"),
    ("JWT, token cache, routes, policy, rate limit, validation, audit", r"simgate::(auth|authz|routes|rate_limit|validate|audit)|jsonwebtoken|governor|quick_cache|jsonschema|aws_lc"),
    ("simgate proxy rewrite and header hygiene", r"simgate::proxy"),
    ("tower layers and simgate glue (rescue, limits, health, body boxing)", r"tower::|tower_http|simgate::|http_body_util|UnsyncBoxBody|tower_layer"),
    ("tokio runtime (scheduler, timers, I/O driver, wakers)", r"tokio::|mio::|parking_lot|std::sys::|futures_util|Waker|RawWaker"),
    ("hyper connection state machine", r"hyper::"),
]
COMPILED = [(name, re.compile(rx)) for name, rx in CATEGORIES]


def category(symbol):
    for name, rx in COMPILED:
        if rx.search(symbol):
            return name
    return "other"


def self_category(stack):
    for frame in stack:
        cat = category(frame)
        if cat != "other":
            return cat
    return "other"


def samples(lines):
    """Yields stacks (leaf first) of symbols from `perf script` text."""
    stack = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if stack:
                yield stack
            stack = []
            continue
        if not line.startswith((" ", "\t")):
            continue  # the sample's header line (comm, pid, time, event)
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        sym = parts[1]
        dso = ""
        m = re.match(r"(.*) \(([^)]*)\)$", sym)
        if m:
            sym, dso = m.group(1), m.group(2)
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        if "kernel" in dso or dso.startswith("[k"):
            sym = "[k] " + sym
        stack.append(sym)
    if stack:
        yield stack


def main():
    per_req = float(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else None
    self_count = collections.Counter()
    total_count = collections.Counter()
    leaf_syms = collections.Counter()
    folded = collections.Counter()
    n = 0
    for stack in samples(sys.stdin):
        n += 1
        self_count[self_category(stack)] += 1
        leaf_syms[stack[0]] += 1
        for cat in {category(f) for f in stack}:
            total_count[cat] += 1
        folded[";".join(reversed([f.replace(";", ":") for f in stack]))] += 1
    if os.environ.get("FOLDED"):
        with open(os.environ["FOLDED"], "w") as f:
            for k, v in folded.most_common():
                f.write(f"{k} {v}\n")
    if not n:
        print("no samples")
        return
    print(f"{n} samples" + (f"; {per_req:.1f} µs of CPU per request (measured without perf)" if per_req else "") + "\n")
    print("| where (self: the leaf frame, or its nearest caller in a category) | self % | self µs/req | total % (anywhere in the stack) |")
    print("|---|---:|---:|---:|")
    for cat, c in self_count.most_common():
        us = f"{per_req * c / n:.2f}" if per_req else "—"
        print(f"| {cat} | {100 * c / n:.1f} | {us} | {100 * total_count[cat] / n:.1f} |")
    print("\nHottest leaf functions:\n")
    print("| function | self % |\n|---|---:|")
    for sym, c in leaf_syms.most_common(25):
        print(f"| `{sym[:110]}` | {100 * c / n:.1f} |")


if __name__ == "__main__":
    main()
