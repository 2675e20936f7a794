"""The notebook side of jupyter-delegate: what a kernel shows and keeps for a task.

`magics` (`%delegate`, `%%delegate`: sugar over the Python API), `record` (the task
record output, updated in place through its display_id, and restore from a saved .ipynb)
and `views` (ipywidgets: the live task view, the review in place, the board). Nothing here
decides or runs anything: tasks run on the manager's engine thread, and every button or
magic is a call on the `Task` API.
"""
