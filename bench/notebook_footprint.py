"""Notebook footprint: what a long task leaves in the .ipynb.

A scripted task of N steps (each turn says a sentence and reads a small file) runs
through the real engine to review; its notebook record is built as the extension shows
it (`record.compact_record`, `record.bundle`: the task+json record plus its text/html
and text/plain fallbacks). Two notebooks are written with nbformat, the same
`%%delegate` cell without and with that output; the growth is the difference in bytes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

NAME = "notebook_footprint"
GOALS = {"record_kb": 16.0, "ipynb_growth_kb": 20.0}
CELL = "%%delegate --repo repo --max-steps {steps}\nRead the notes.\n"


def notebook_bytes(cell: str, outputs: list[dict[str, Any]], path: Path) -> int:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    code = new_code_cell(cell, execution_count=1)  # type: ignore[no-untyped-call]
    code.outputs = [new_output(**output) for output in outputs]  # type: ignore[no-untyped-call]
    notebook = new_notebook(cells=[code])  # type: ignore[no-untyped-call]
    nbformat.write(notebook, str(path))  # type: ignore[no-untyped-call]
    nbformat.validate(nbformat.read(str(path), as_version=4))  # type: ignore[no-untyped-call]
    return path.stat().st_size


def run(size: str = "full") -> dict[str, Any]:
    from jupyter_delegate import Budget, Outcome
    from jupyter_delegate.manager import TaskManager
    from jupyter_delegate.notebook.record import MIME, bundle, compact_record, display_id_for
    from jupyter_delegate.testing import FakeMessagesAPI

    common.check_size(size)
    steps = 5 if size == "tiny" else 200
    with common.git_identity(), common.scratch(NAME) as tmp:
        repo = common.make_repo(tmp / "repo")
        scenario = common.read_turns(steps, text="Reading the notes once more to be sure.")
        fake = FakeMessagesAPI(scenario)
        manager = TaskManager(client=fake.async_client(), sandbox="none")
        outcome = Outcome("Read the notes.", budget=Budget(max_steps=steps + 5))
        task = manager.submit(outcome, repo=repo)
        state = task.wait(timeout=600)
        if str(state) != "review":
            raise RuntimeError(f"the scripted task ended {state}: {task.error}")
        record = compact_record(task, name="bench", notebook_dir=tmp)
        mime = bundle(record)
        output = {
            "output_type": "display_data",
            "data": mime,
            "metadata": {},
            "transient": {"display_id": display_id_for(task)},
        }
        output.pop("transient")  # never saved in the .ipynb
        cell = CELL.format(steps=steps + 5)
        bare = notebook_bytes(cell, [], tmp / "bare.ipynb")
        full = notebook_bytes(cell, [output], tmp / "with-record.ipynb")
        journal_bytes = manager.journal_path(task).stat().st_size
    figures = {
        "benchmark": NAME,
        "size": size,
        "steps": task.usage.steps,
        "record_kb": len(json.dumps(record).encode()) / 1024,
        "bundle_kb": sum(len((json.dumps(v) if k == MIME else v).encode()) for k, v in mime.items())
        / 1024,
        "ipynb_bare_kb": bare / 1024,
        "ipynb_with_record_kb": full / 1024,
        "ipynb_growth_kb": (full - bare) / 1024,
        "journal_kb": journal_bytes / 1024,
    }
    return common.round_all(figures)


if __name__ == "__main__":
    sys.exit(common.main(run))
