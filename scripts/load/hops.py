#!/usr/bin/env python3
"""Per-hop breakdown of a load run from orders' /metrics (Prometheus text on stdin or a file).

For each downstream orders called (`http_client_request_duration_seconds` by `server_address`) and
for orders' own `POST /v1/orders` (`http_server_request_duration_seconds`): calls, mean, and p50/p99
read off the histogram buckets (upper bound of the bucket the quantile falls in).
"""
import re
import sys
from collections import defaultdict

LINE = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')


def parse(text):
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            yield m.group(1), dict(LABEL.findall(m.group(2))), float(m.group(3))


def quantile(buckets, q):
    total = buckets[-1][1] if buckets else 0
    for bound, count in buckets:
        if total and count >= q * total:
            return bound
    return float('nan')


def main():
    text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
    hops = defaultdict(lambda: {'sum': 0.0, 'count': 0.0, 'buckets': defaultdict(float)})
    for name, labels, value in parse(text):
        if name.startswith('http_client_request_duration_seconds'):
            key = 'client ' + labels.get('server_address', '?') + (' ' + labels.get('http_request_method', ''))
        elif name.startswith('http_server_request_duration_seconds') and labels.get('http_route') == '/v1/orders' \
                and labels.get('http_request_method') == 'POST':
            key = 'server POST /v1/orders'
        else:
            continue
        hop = hops[key]
        if name.endswith('_sum'):
            hop['sum'] += value
        elif name.endswith('_count'):
            hop['count'] += value
        elif name.endswith('_bucket'):
            le = labels.get('le')
            hop['buckets'][float('inf') if le == '+Inf' else float(le)] += value
    print(f"{'hop':<40} {'calls':>8} {'mean ms':>8} {'p50 ≤ms':>8} {'p99 ≤ms':>8}")
    for key in sorted(hops):
        hop = hops[key]
        buckets = sorted(hop['buckets'].items())
        mean = 1000 * hop['sum'] / hop['count'] if hop['count'] else float('nan')
        p50, p99 = (1000 * quantile(buckets, q) for q in (0.5, 0.99))
        print(f"{key:<40} {int(hop['count']):>8} {mean:>8.2f} {p50:>8.1f} {p99:>8.1f}")


if __name__ == '__main__':
    main()
