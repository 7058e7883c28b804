"""Long-context tasks: a base class, a registry, and one module per task family."""

from sparse_frontier.tasks.base import Draft, Task, extract_answer

# Importing a task module registers its tasks.
from sparse_frontier.tasks.qa import tasks as _qa  # noqa: F401
from sparse_frontier.tasks.registry import TASKS, get_task_class, register_task
from sparse_frontier.tasks.ruler import cwe as _cwe  # noqa: F401
from sparse_frontier.tasks.ruler import niah as _niah  # noqa: F401
from sparse_frontier.tasks.ruler import vt as _vt  # noqa: F401
from sparse_frontier.tasks.story import tasks as _story  # noqa: F401

__all__ = ["TASKS", "Draft", "Task", "extract_answer", "get_task_class", "register_task"]
