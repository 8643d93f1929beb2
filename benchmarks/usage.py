"""What a workload process used: CPU seconds and peak memory, read from ``getrusage``."""

from __future__ import annotations

import resource


def cpu_seconds() -> float:
    """CPU seconds of this process so far, all threads (the tokenizer's included), and of the child processes
    it has waited for (``poet prepare``'s plot helpers)."""
    return sum(usage.ru_utime + usage.ru_stime
               for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def rss_mb() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"maxrss_self_mb": round(own, 1), "maxrss_children_mb": round(children, 1)}
