"""What a task declares it needs to run its checks: `cpus` and `memory`.

Declared once (`--cpus N`, `--memory SIZE` in options.py for the CLI and the magics;
`delegate(..., cpus=, memory=)` on the API), checked here when the task is submitted (a
malformed value is refused, nothing is made), and journaled in the task's first line as
`resources` (`{"cpus": 2, "memory": 4294967296}`, memory in bytes).

Where it matters: on a Dask cluster (cluster.py) a round is submitted with
`resources={"cpus": N, "memory": BYTES}`, so the scheduler runs it only on a worker
started with at least that much (`dask worker ... --resources "cpus=4 memory=16e9"`), and
no more such rounds at once than a worker declares. A task whose resources no worker of
the cluster declares is refused at submit, saying so. In this process (the default
runner) they are journaled and shown, not enforced: nothing limits a check's CPUs or
memory here.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import UsageError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(value: str | int) -> int:
    """Bytes, from an int or a size such as "512MB", "4GiB", "2g" (decimal units: KB, MB,
    GB, TB; binary: KiB, MiB, GiB, TiB)."""
    if isinstance(value, bool):
        raise UsageError(f"--memory takes a size such as 4GB or 512MiB, not {value!r}.")
    if isinstance(value, int):
        number, factor = float(value), 1
    else:
        found = _SIZE.match(str(value))
        unit = found.group(2).lower() if found else None
        if found is None or unit not in _UNITS:
            raise UsageError(
                f"--memory takes a size such as 4GB, 512MiB or 2g (a number and a unit), "
                f"not {value!r}."
            )
        number, factor = float(found.group(1)), _UNITS[unit]
    size = int(number * factor)
    if size < 1:
        raise UsageError(f"--memory must be more than nothing, not {value!r}.")
    return size


def declared(
    cpus: int | float | str | None = None, memory: str | int | None = None
) -> dict[str, Any]:
    """The resources a task declares, checked: {} when none, else {"cpus": N, "memory":
    BYTES} with what was given."""
    out: dict[str, Any] = {}
    if cpus is not None:
        try:
            number = float(cpus) if not isinstance(cpus, bool) else float("nan")
        except (TypeError, ValueError):
            number = float("nan")
        if not number > 0 or number != number or number > 4096:  # NaN fails `> 0`
            raise UsageError(f"--cpus takes a number of CPUs above 0, such as 2, not {cpus!r}.")
        out["cpus"] = int(number) if number == int(number) else number
    if memory is not None:
        out["memory"] = parse_memory(memory)
    return out


def text(resources: dict[str, Any]) -> str:
    """ "2 CPUs, 4.0 GB" (empty when none)."""
    parts = []
    if "cpus" in resources:
        cpus = resources["cpus"]
        parts.append(f"{cpus} CPU{'' if cpus == 1 else 's'}")
    if "memory" in resources:
        parts.append(f"{resources['memory'] / 1e9:.1f} GB")
    return ", ".join(parts)
