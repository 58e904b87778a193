"""What machine a benchmark ran on (shared by the benchmark scripts' result files)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> dict:
    """CPU model and counts, platform, and the load average when the run ended."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = None
    return {
        "processor": platform.processor(),
        "cpu_model": model,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "platform": platform.platform(),
        "load_average_1_5_15min": ([round(v, 2) for v in os.getloadavg()]
                                   if hasattr(os, "getloadavg") else None),
    }
