"""Progress bars: tqdm's on a terminal; in a log (output not a terminal), occasional plain lines
instead of carriage-return frames that a file keeps as one long line of redraws."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm

LOG_INTERVAL_S = 30.0  # seconds between two progress lines in a log


class LogLines(tqdm):
    """A tqdm that writes each update as a line of its own, at most every ``LOG_INTERVAL_S``, and
    the final count once when it closes."""

    def display(self, msg=None, pos=None):
        text = (self.__str__() if msg is None else msg).strip()
        if text:
            self.fp.write(text + "\n")
            self.fp.flush()
            self._shown = self.n
        return False  # nothing to clear with a carriage return

    def refresh(self, nolock=False, lock_args=None):
        """Rate-limited here too: set_postfix and tqdm.write refresh on every call."""
        if self.disable:
            return None
        now = time.monotonic()
        if self.n == self.total or now - getattr(self, "_line_t", float("-inf")) >= self.mininterval:
            self._line_t = now
            return super().refresh(nolock, lock_args)
        return None

    def clear(self, nolock=False):
        pass  # a line in a log stays

    def close(self):
        if getattr(self, "disable", True):
            return
        if getattr(self, "_shown", None) != self.n:
            self.display()
        self.disable = True
        self._decr_instances(self)


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """tqdm(iterable, **kwargs) on a terminal; ``LogLines`` when the stream it writes to (``file``,
    stderr by default) is not one."""
    stream = kwargs.get("file") or sys.stderr
    if hasattr(stream, "isatty") and stream.isatty():
        return tqdm(iterable, **kwargs)
    kwargs.update(mininterval=max(kwargs.get("mininterval", 0), LOG_INTERVAL_S), dynamic_ncols=False)
    kwargs.setdefault("bar_format", "{desc}: {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")
    return LogLines(iterable, **kwargs)
