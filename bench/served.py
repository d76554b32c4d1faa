#!/usr/bin/env python3
"""The gateway's own time to answer, from its access log: arrival of the request to
the answer handed to the connection (the `latency_ms` field), over the lines written
after byte OFFSET of LOG that carry `cache="RESULT"`. Prints one JSON object:
  {"gw_samples": N, "gw_p50_us": F, "gw_p99_us": F}
Used by bench/run.sh for the cache-hit target (issue 16's bar is the gateway's time
to answer a hit, which wrk's round trip through the kernel and its own queue hides).

  served.py LOG OFFSET [RESULT]
"""

import json
import re
import sys

LATENCY = re.compile(rb' latency_ms=([0-9.]+)')


def main() -> None:
    path, offset = sys.argv[1], int(sys.argv[2])
    marker = f' cache="{sys.argv[3] if len(sys.argv) > 3 else "hit"}"'.encode()
    samples = []
    with open(path, "rb") as log:
        log.seek(offset)
        for line in log:
            if marker in line:
                found = LATENCY.search(line)
                if found:
                    samples.append(float(found.group(1)) * 1000)
    samples.sort()

    def at(share: float) -> float | None:
        return samples[min(len(samples) - 1, int(len(samples) * share))] if samples else None

    print(json.dumps({"gw_samples": len(samples), "gw_p50_us": at(0.50), "gw_p99_us": at(0.99)}))


if __name__ == "__main__":
    main()
