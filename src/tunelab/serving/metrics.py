"""Server metrics in Prometheus' text exposition format (``GET /metrics``).

Counters of requests (by route and status), prompt and completion tokens and cancelled
requests; latency and batch-size histograms; the queue length and in-flight requests are read
when scraped. Thread-safe: the worker thread and the event loop both record.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Histogram:
    """Cumulative bucket counts, sum and count of observed values."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out = [
            f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {n}'
            for bound, n in zip(self.buckets, self.counts, strict=True)
        ]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        return [*out, f"{name}_sum{suffix} {self.sum:.6f}", f"{name}_count{suffix} {self.count}"]


class Metrics:
    """What ``/metrics`` reports; ``gauges`` are read when scraped."""

    def __init__(self, gauges: dict[str, Callable[[], float]] | None = None) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.tokens = {"prompt": 0, "completion": 0}
        self.cancelled = 0
        self.inflight = 0  # requests being answered (changed on the event loop only)
        self.latency: dict[str, Histogram] = {}
        self.batch_rows = Histogram(BATCH_BUCKETS)
        self.gauges = gauges or {}

    def request(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(route, status)] += 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def count_tokens(self, prompt: int, completion: int) -> None:
        with self.lock:
            self.tokens["prompt"] += prompt
            self.tokens["completion"] += completion

    def count_cancelled(self) -> None:
        with self.lock:
            self.cancelled += 1

    def batch(self, rows: int) -> None:
        with self.lock:
            self.batch_rows.observe(rows)

    def render(self) -> str:
        """The exposition text."""
        with self.lock:
            lines = [
                "# HELP tunelab_requests_total HTTP requests by route and status code.",
                "# TYPE tunelab_requests_total counter",
            ]
            for (route, status), n in sorted(self.requests.items()):
                lines.append(f'tunelab_requests_total{{route="{route}",code="{status}"}} {n}')
            for kind, n in self.tokens.items():
                name = f"tunelab_{kind}_tokens_total"
                lines += [
                    f"# HELP {name} {kind.capitalize()} tokens of finished requests.",
                    f"# TYPE {name} counter",
                    f"{name} {n}",
                ]
            lines += [
                "# HELP tunelab_cancelled_total Requests whose client left before the end.",
                "# TYPE tunelab_cancelled_total counter",
                f"tunelab_cancelled_total {self.cancelled}",
                "# HELP tunelab_request_latency_seconds Time from request to last byte.",
                "# TYPE tunelab_request_latency_seconds histogram",
            ]
            for route, hist in sorted(self.latency.items()):
                lines += hist.lines("tunelab_request_latency_seconds", f'route="{route}"')
            lines += [
                "# HELP tunelab_batch_rows Rows decoded together, per decoding step.",
                "# TYPE tunelab_batch_rows histogram",
                *self.batch_rows.lines("tunelab_batch_rows", ""),
            ]
            lines += [
                "# HELP tunelab_inflight_requests Requests being answered (this scrape included).",
                "# TYPE tunelab_inflight_requests gauge",
                f"tunelab_inflight_requests {self.inflight}",
            ]
        for name, read in self.gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"
