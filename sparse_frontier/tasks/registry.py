"""The task registry: task modules register their classes here with ``@register_task``.

Importing :mod:`sparse_frontier.tasks` imports every task module, so its ``TASKS`` /
``get_task_class`` know them all; a task module imports only this module and :mod:`.base`.
"""

from __future__ import annotations

from sparse_frontier.params import Registry

TASKS = Registry("task")


def register_task(cls: type) -> type:
    return TASKS.register(cls)


def get_task_class(name: str) -> type:
    return TASKS.get(name)
