"""The teacher-update schedule of TransFGU's bootstrapping (spec §5, official ``*_trainval.py``)."""

from __future__ import annotations

__all__ = ["BootstrapSchedule"]


class BootstrapSchedule:
    """From ``start``, at every epoch e with ``e % interval(e) == 0`` the student becomes the teacher and is
    reset to its initial weights; ``interval(e) = intervals[min(e // 10, len - 1)]`` (the config's comma list).

    Example:
        >>> BootstrapSchedule(3, (3, 3, 3, 2)).update_epochs(35)
        [3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 32, 34]
    """

    def __init__(self, start: int, intervals: tuple[int, ...]):
        if start < 1 or not intervals or min(intervals) < 1:
            raise ValueError(f"need start >= 1 and positive intervals, got start={start}, intervals={intervals}")
        self.start, self.intervals = start, tuple(intervals)

    def interval(self, epoch: int) -> int:
        return self.intervals[min(epoch // 10, len(self.intervals) - 1)]

    def is_update(self, epoch: int) -> bool:
        return epoch >= self.start and epoch % self.interval(epoch) == 0

    def update_epochs(self, epochs: int) -> list[int]:
        return [e for e in range(epochs) if self.is_update(e)]
