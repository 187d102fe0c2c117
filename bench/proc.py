"""What the kernel says about a process: CPU time (all threads), for costs per request that
hold on a shared machine where wall-clock times drift with the neighbours' load."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid`, every thread, from /proc/<pid>/stat (10 ms ticks:
    meaningful over windows of seconds, not per request)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS
