"""The predictive scheduler and Exo tasks (docs/scheduler.md).

``predict`` (burst EMA, classes, accuracy), ``queues`` (three FIFO run queues, O(1) pick
with a budget and aging), ``scheduler`` (greenlet tasks, timers, waits, stealing),
``subsystem`` (the boot table's Scheduler step, ``/proc/sched``). Applications use
``exo_std.task``.
"""
