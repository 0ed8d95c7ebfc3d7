"""Prometheus text metrics: commands, refusals by code, latency, projection lag, group
commit, GC pauses."""

import threading
from collections import defaultdict

from domain.committer import GroupCommitter
from store.collection import PAUSES, Pauses


class Metrics:
    """Counters kept in process; rendered in Prometheus' text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.commands: dict[str, int] = defaultdict(int)
        self.refusals: dict[str, int] = defaultdict(int)
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.latency_count: dict[str, int] = defaultdict(int)

    def command(self, name: str) -> None:
        """Count a recorded command."""
        with self._lock:
            self.commands[name] += 1

    def refusal(self, code: str) -> None:
        """Count a refusal by its code."""
        with self._lock:
            self.refusals[code] += 1

    def observe(self, route: str, seconds: float) -> None:
        """Add one request's latency."""
        with self._lock:
            self.latency_sum[route] += seconds
            self.latency_count[route] += 1

    def render(self, head: int, projected: int, committer: GroupCommitter | None = None) -> str:
        """The text exposition format (with ``committer``, how well commits are shared)."""
        lines = [
            "# HELP harbor_commands_total Commands recorded, by command.",
            "# TYPE harbor_commands_total counter",
        ]
        with self._lock:
            lines += [
                f'harbor_commands_total{{command="{k}"}} {v}'
                for k, v in sorted(self.commands.items())
            ]
            lines += [
                "# HELP harbor_refusals_total Commands refused, by code.",
                "# TYPE harbor_refusals_total counter",
            ]
            lines += [
                f'harbor_refusals_total{{code="{k}"}} {v}' for k, v in sorted(self.refusals.items())
            ]
            lines += [
                "# HELP harbor_request_seconds Request latency, by route.",
                "# TYPE harbor_request_seconds summary",
            ]
            for route in sorted(self.latency_count):
                lines.append(
                    f'harbor_request_seconds_sum{{route="{route}"}} {self.latency_sum[route]:.6f}'
                )
                lines.append(
                    f'harbor_request_seconds_count{{route="{route}"}} {self.latency_count[route]}'
                )
        lines += [
            "# HELP harbor_log_position Latest log position.",
            "# TYPE harbor_log_position gauge",
            f"harbor_log_position {head}",
            "# HELP harbor_projection_lag Events recorded but not yet projected.",
            "# TYPE harbor_projection_lag gauge",
            f"harbor_projection_lag {max(head - projected, 0)}",
        ]
        if committer is not None:
            lines += [
                "# HELP harbor_group_commit_transactions_total Shared transactions committed.",
                "# TYPE harbor_group_commit_transactions_total counter",
                f"harbor_group_commit_transactions_total {committer.batches}",
                "# HELP harbor_group_commit_commands_total Commands committed in them"
                " (divided by the transactions: commands per transaction).",
                "# TYPE harbor_group_commit_commands_total counter",
                f"harbor_group_commit_commands_total {committer.commands}",
            ]
        if PAUSES.watching:
            lines += _pauses(PAUSES)
        return "\n".join(lines) + "\n"


def _pauses(pauses: Pauses) -> list[str]:
    """The collector's stops of this process (harbor serve watches them), by generation."""
    lines: list[str] = []
    for name, kind, meaning, values in (
        ("harbor_gc_collections_total", "counter", "Garbage collections", pauses.collections),
        ("harbor_gc_seconds_total", "counter", "Time the collector stopped the process",
         pauses.seconds),
        ("harbor_gc_longest_pause_seconds", "gauge", "The longest single collection",
         pauses.longest),
    ):
        lines += [f"# HELP {name} {meaning}, by generation (2 is full).", f"# TYPE {name} {kind}"]
        lines += [
            f'{name}{{generation="{g}"}} {v:.6f}' if isinstance(v, float) else
            f'{name}{{generation="{g}"}} {v}'
            for g, v in enumerate(values)
        ]
    return lines


METRICS = Metrics()
