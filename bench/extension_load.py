"""Extension load: `%load_ext jupyter_delegate` in a fresh kernel.

For each of K fresh kernels (jupyter_client), the load is timed inside the kernel with
`time.perf_counter()` around `get_ipython().run_line_magic('load_ext',
'jupyter_delegate')`; the median is reported. Then the same in K kernels told the
notebook they run (`JPY_SESSION_NAME`, as Jupyter's server starts kernels), a notebook
holding the records of 3 tasks, which the load re-attaches (`load_named_ms_p50`): what a
user who reopens a notebook pays, and what the first figure alone missed (reading the
records through nbformat cost that load 1.3-2 s: bench/RESULTS.md). Beside them,
`python -X importtime` of what the load imports once IPython is up
(`jupyter_delegate.notebook.magics`) names the slowest modules (cumulative time,
microseconds); any of `anthropic`, `httpx2`, `git`, `ipywidgets` among them means a
dependency is not imported lazily.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

NAME = "extension_load"
GOALS = {"load_ms_p50": 300.0, "load_named_ms_p50": 300.0}
NAMED_TASKS = 3
TIMED_LOAD = (
    "import time as _t\n"
    "_s = _t.perf_counter()\n"
    "get_ipython().run_line_magic('load_ext', 'jupyter_delegate')\n"
    "print(round((_t.perf_counter() - _s) * 1000, 3))\n"
    "import sys as _sys\n"
    "print(','.join(m for m in ('anthropic', 'httpx2', 'git', 'ipywidgets', 'yaml') "
    "if m in _sys.modules))\n"
)
MAGICS = "jupyter_delegate.notebook.magics"


def import_offenders(top: int = 8) -> tuple[float, list[dict[str, Any]]]:
    """(ms to import the magics module once IPython is up, the modules it pulls in with
    the largest cumulative import time)."""
    code = "import IPython, ipykernel.ipkernel; import jupyter_delegate.notebook.magics"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True
    )
    rows: list[dict[str, Any]] = []
    after_kernel = False
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if after_kernel:
            depth = (len(parts[2]) - len(parts[2].lstrip()) - 1) // 2
            rows.append({"module": name, "cumulative_us": int(parts[1]), "depth": depth})
        after_kernel = after_kernel or name == "ipykernel.ipkernel"
    total = next((r["cumulative_us"] for r in rows if r["module"] == MAGICS), 0)
    rows.sort(key=lambda r: r["cumulative_us"], reverse=True)
    return total / 1000, [r for r in rows if r["module"] != MAGICS][:top]


def notebook_with_records(folder: Path) -> str:
    """A repository with `NAMED_TASKS` tasks in review (the scripted model, in process)
    and a notebook beside it holding their records; the notebook's name."""
    from jupyter_delegate import Outcome
    from jupyter_delegate.manager import TaskManager
    from jupyter_delegate.notebook.record import MIME, compact_record
    from jupyter_delegate.testing import FakeMessagesAPI

    repo = common.make_repo(folder / "repo")
    fake = FakeMessagesAPI(common.read_turns(1))
    manager = TaskManager(client=fake.async_client(), sandbox="none")
    cells = []
    for n in range(NAMED_TASKS):
        task = manager.submit(Outcome(f"Read the notes ({n}).", checks=("true",)), repo=repo)
        if str(task.wait(timeout=120)) != "review":
            raise RuntimeError(f"the notebook's task {n} ended {task.state}: {task.error}")
        record = dict(compact_record(task, notebook_dir=folder))
        output = {"output_type": "display_data", "data": {MIME: record}, "metadata": {}}
        cells.append(
            {
                "cell_type": "code",
                "execution_count": n + 1,
                "id": f"c{n}",
                "metadata": {},
                "outputs": [output],
                "source": "%%delegate ...",
            }
        )
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (folder / "work.ipynb").write_text(json.dumps(notebook))
    return "work.ipynb"


def timed_loads(kernels: int, folder: Path, env: dict[str, str]) -> tuple[list[float], str]:
    """The load's time in each of `kernels` fresh kernels in `folder`; the heavy modules
    the last one had imported after it."""
    loads: list[float] = []
    heavy_loaded = ""
    for _ in range(kernels):
        with common.kernel(env, cwd=folder) as client:
            lines = common.kernel_run(client, TIMED_LOAD).splitlines()
            loads.append(float(lines[0]))
            heavy_loaded = lines[1] if len(lines) > 1 else ""
    return loads, heavy_loaded


def run(size: str = "full") -> dict[str, Any]:
    common.check_size(size)
    kernels = 1 if size == "tiny" else 5
    with common.git_identity(), common.scratch(NAME) as tmp:
        loads, heavy_loaded = timed_loads(kernels, tmp, {})
        named = notebook_with_records(tmp)
        named_loads, heavy_named = timed_loads(kernels, tmp, {"JPY_SESSION_NAME": named})
    import_ms, offenders = import_offenders()
    figures = {
        "benchmark": NAME,
        "size": size,
        "kernels": kernels,
        "load_ms_p50": common.median(loads),
        "load_ms_max": max(loads),
        "heavy_modules_after_load": heavy_loaded,
        "load_named_ms_p50": common.median(named_loads),
        "load_named_ms_max": max(named_loads),
        "heavy_modules_after_named_load": heavy_named,
        "importtime_magics_ms": import_ms,
        "importtime_top": offenders,
    }
    return common.round_all(figures)


if __name__ == "__main__":
    sys.exit(common.main(run))
