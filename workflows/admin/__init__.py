"""The workflows admin, the operators' run console: runs (``runs``), approvals
(``approvals``) and the workflows themselves (``workflows``, with its forms in
``workflow_forms``); ``display`` holds how all of them show statuses, durations and diffs."""

from . import approvals, runs, workflows

__all__ = ["approvals", "runs", "workflows"]
