#!/usr/bin/env python3
"""Turns one fixed-rate h2load run into one JSON line for report.py.

Usage: h2load.py STDOUT_FILE LOG_FILE > run.json

STDOUT_FILE is h2load's summary (for its request counts), LOG_FILE its
--log-file: one line per completed request, tab-separated: start time (µs
since the epoch), HTTP status, µs until the end of the response. The
percentiles are computed here from every request (nearest rank).
"""

import json
import re
import sys


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    rank = max(1, int(round(p / 100 * len(sorted_values) + 0.5)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def main():
    summary = open(sys.argv[1]).read()
    times, ok, bad = [], 0, 0
    for line in open(sys.argv[2]):
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        status, us = int(parts[1]), int(parts[2])
        times.append(us)
        if 200 <= status < 300:
            ok += 1
        else:
            bad += 1
    times.sort()
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", summary)
    if not m:
        sys.exit("h2load.py: no request summary in h2load's output")
    total, started, done, succeeded, failed, errored, timeout = map(int, m.groups())
    d = re.search(r"finished in ([\d.]+)s", summary)
    ms = lambda us: None if us is None else us / 1000
    json.dump({
        "requests": ok + bad,
        "ok": ok,
        # h2load counts a request still in flight when the duration ends as
        # neither done nor failed; errors and timeouts are failures.
        "failed": bad + errored + timeout,
        "rps": (ok + bad) / float(d.group(1)) if d else None,
        "p50_ms": ms(percentile(times, 50)),
        "p99_ms": ms(percentile(times, 99)),
        "p999_ms": ms(percentile(times, 99.9)),
        "max_ms": ms(times[-1] if times else None),
    }, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
