"""Task plugins."""

from __future__ import annotations

from bench.errors import BenchError, UnknownNameError
from bench.registry import Registry, did_you_mean
from bench.tasks.base import Task, validate_task_class

TASKS: Registry[type[Task]] = Registry("task", group="bench.tasks", validate=validate_task_class)
TASKS.register("classification", "bench.tasks.classification:Classification")

__all__ = ["TASKS", "Task", "as_task"]
TASKS.register("detection", "bench.tasks.detection:Detection")
TASKS.register("segmentation", "bench.tasks.segmentation:Segmentation")


def as_task(task: Task | str) -> Task:
    """``task`` itself, or the registered task of that name (built with its defaults)."""
    if isinstance(task, Task):
        return task
    try:
        return TASKS.get(task)()
    except UnknownNameError:
        raise BenchError(f"unknown task {task!r}.{did_you_mean(task, TASKS.names())} "
                         f"Known: {', '.join(TASKS.names())}.") from None
