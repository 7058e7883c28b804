"""Long-context tasks: a base class, a registry, and one module per task family."""

from sparse_frontier.tasks.base import TASKS, Draft, Task, extract_answer, get_task_class, register_task
from sparse_frontier.tasks.ruler import niah as _niah  # noqa: F401  (registers ruler_niah)

__all__ = ["TASKS", "Draft", "Task", "extract_answer", "get_task_class", "register_task"]
