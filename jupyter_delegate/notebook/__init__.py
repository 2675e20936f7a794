"""The notebook side of jupyter-delegate: what a kernel shows and keeps for a task.

`magics` (`%delegate`, `%%delegate`, `%%delegate-plan`: sugar over the Python API),
`record` (the task record output, updated in place through its display_id, and restore
from a saved .ipynb), `views` (ipywidgets: the live task view, the review in place, the
board), `plan_view` and `plan_record` (a plan's widget and its record; `graph` draws its
subtasks) and `attempts_view` (best-of-N attempts side by side). Nothing here
decides or runs anything: tasks run on the manager's engine thread, and every button or
magic is a call on the `Task` API.
"""
