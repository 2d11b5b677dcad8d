"""Task plugins."""

from __future__ import annotations

from bench.registry import Registry
from bench.tasks.base import Task, validate_task_class

TASKS: Registry[type[Task]] = Registry("task", group="bench.tasks", validate=validate_task_class)
TASKS.register("classification", "bench.tasks.classification:Classification")

__all__ = ["TASKS", "Task"]
TASKS.register("detection", "bench.tasks.detection:Detection")
TASKS.register("segmentation", "bench.tasks.segmentation:Segmentation")
