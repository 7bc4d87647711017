"""A table's records in modification order, for windows on the modification time."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass
class ModLog:
    """Records in modification order: their times (epoch ms, strictly increasing, from one
    clock per account) and ids, side by side, so a window on the modification time is two
    bisections and a slice (what incremental reads ask for). A record moves to the end on each
    write."""

    stamps: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def add(self, stamp: int, record_id: str) -> None:
        if self.stamps and stamp <= self.stamps[-1]:  # not with one clock per account
            index = bisect.bisect_right(self.stamps, stamp)
            self.stamps.insert(index, stamp)
            self.ids.insert(index, record_id)
            return
        self.stamps.append(stamp)
        self.ids.append(record_id)

    def remove(self, stamp: int, record_id: str) -> None:
        index = bisect.bisect_left(self.stamps, stamp)
        while index < len(self.stamps) and self.stamps[index] == stamp:
            if self.ids[index] == record_id:
                del self.stamps[index]
                del self.ids[index]
                return
            index += 1

    def span(self, low: int | None, high: int | None) -> tuple[int, int]:
        """The slice of entries whose time is within ``low``..``high`` (inclusive; None: open)."""
        start = 0 if low is None else bisect.bisect_left(self.stamps, low)
        end = len(self.stamps) if high is None else bisect.bisect_right(self.stamps, high)
        return start, max(start, end)
