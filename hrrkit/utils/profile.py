"""Time and peak memory per pipeline stage: what ``hrrkit detect --profile`` and
``benchmarks/detect_memory.py`` report.

The pipeline marks its stages with :func:`stage` (``decode``, ``rescale``, ``retrospection``,
``backbone``, ``head``, ``evidence``); the marks cost nothing unless a :class:`StageProfile` is
active (``with StageProfile() as profile: ...``), which then adds up, per stage, the wall time spent
in it and the highest resident memory (RSS) the process reached while it ran.

Peak memory per stage is exact on Linux: on entering a stage the kernel's high-water mark of the
resident set (``VmHWM`` in ``/proc/self/status``) is reset to the current RSS (writing ``5`` to
``/proc/self/clear_refs``) and read back when the stage ends, so every short-lived temporary counts,
which a sampling thread would miss. Where that file cannot be written (other systems, some sandboxes)
the memory columns are ``None`` and times are still reported. Stages may nest (time is charged to the
innermost stage; a peak counts for the stage and the stages around it).
"""

from __future__ import annotations

import contextlib
import contextvars
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["STAGES", "StageProfile", "StageRow", "active_profile", "current_rss_mb", "peak_rss_mb", "stage"]

#: The stages of scoring, in pipeline order (others may be added; they are listed after these).
STAGES = ("decode", "rescale", "retrospection", "backbone", "head", "evidence")

_ACTIVE: contextvars.ContextVar[StageProfile | None] = contextvars.ContextVar("hrrkit_stage_profile", default=None)
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mb(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def current_rss_mb() -> float | None:
    """Resident memory of this process now, MiB (``None`` where ``/proc`` is missing)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Highest resident memory of this process since it started, MiB (``ru_maxrss``; the kernel's
    high-water mark, which an active :class:`StageProfile` resets: use its ``peak_rss_mb`` then)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


@dataclass
class StageRow:
    """One stage of a :class:`StageProfile`.

    Attributes:
        stage: its name.
        seconds: wall time spent in it (inner stages excluded), s.
        calls: how many times it ran.
        images_per_s: ``images / seconds`` (the images the profile counted; ``None`` for 0 s).
        peak_rss_mb: highest RSS of the process while it ran, MiB (``None``: not measurable here).
        growth_mb: how far above the RSS at its entry that peak went, largest over its calls, MiB:
            the memory the stage itself needs on top of what was already held.
    """

    stage: str
    seconds: float
    calls: int
    images_per_s: float | None
    peak_rss_mb: float | None
    growth_mb: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class StageProfile:
    """Wall time and peak RSS per stage while active (a context manager; see the module docstring).

    ``count_images(n)`` adds the images scored (the denominator of ``images_per_s``).
    """

    def __init__(self) -> None:
        self.images = 0
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.peak: dict[str, float] = {}
        self.growth: dict[str, float] = {}
        self.memory = False
        self.started_rss_mb: float | None = None
        self._peak = 0.0
        self.total_seconds = 0.0
        self._stack: list[list[Any]] = []  # [name, entry time, inner seconds, entry rss, peak so far]
        self._token: contextvars.Token | None = None
        self._started = 0.0

    def __enter__(self) -> StageProfile:
        if self._token is not None:
            raise RuntimeError("StageProfile: already active")
        # resetting the high-water mark resets ru_maxrss too: keep the peak reached before (model loading)
        self._peak = peak_rss_mb()
        self.memory = _reset_high_water_mark() and current_rss_mb() is not None
        self.started_rss_mb = current_rss_mb()
        self._token = _ACTIVE.set(self)
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.total_seconds += time.perf_counter() - self._started
        self._fold_high_water_mark()
        _ACTIVE.reset(self._token)
        self._token = None

    def count_images(self, n: int) -> None:
        self.images += int(n)

    @property
    def peak_rss_mb(self) -> float:
        """Highest RSS of the process, MiB, from its start to now (or to the profile's end)."""
        if self._token is not None:
            self._fold_high_water_mark()
        return self._peak

    def _fold_high_water_mark(self) -> float | None:
        """Read the high-water mark since the last reset into the overall peak; returns it."""
        hwm = _status_mb("VmHWM") if self.memory else None
        if hwm is None:
            self._peak = max(self._peak, peak_rss_mb())
        else:
            self._peak = max(self._peak, hwm)
        return hwm

    # ------------------------------------------------------------------ stage bookkeeping

    def _enter(self, name: str) -> None:
        rss = None
        if self.memory:
            hwm = self._fold_high_water_mark()  # the peak so far, before the mark is reset
            if self._stack and hwm is not None:  # ... which the enclosing stage reached
                self._stack[-1][4] = max(self._stack[-1][4], hwm)
            _reset_high_water_mark()
            rss = current_rss_mb()
        self._stack.append([name, time.perf_counter(), 0.0, rss, rss or 0.0])

    def _exit(self) -> None:
        name, entered, inner, rss, peak = self._stack.pop()
        elapsed = time.perf_counter() - entered
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - inner
        self.calls[name] = self.calls.get(name, 0) + 1
        if self._stack:
            self._stack[-1][2] += elapsed
        if self.memory and rss is not None:
            peak = max(peak, self._fold_high_water_mark() or 0.0)
            self.peak[name] = max(self.peak.get(name, 0.0), peak)
            self.growth[name] = max(self.growth.get(name, 0.0), peak - rss)
            if self._stack:  # the enclosing stage saw this peak too
                self._stack[-1][4] = max(self._stack[-1][4], peak)

    # ------------------------------------------------------------------ results

    def rows(self) -> list[StageRow]:
        """One row per stage that ran, pipeline order first (:data:`STAGES`)."""
        names = [s for s in STAGES if s in self.seconds] + sorted(set(self.seconds) - set(STAGES))
        return [StageRow(
            stage=n, seconds=self.seconds[n], calls=self.calls[n],
            images_per_s=self.images / self.seconds[n] if self.seconds[n] > 0 and self.images else None,
            peak_rss_mb=self.peak.get(n), growth_mb=self.growth.get(n),
        ) for n in names]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: images, total seconds, overall peak RSS and the :meth:`rows`."""
        return {"images": self.images, "seconds": self.total_seconds,
                "images_per_s": self.images / self.total_seconds if self.total_seconds > 0 else None,
                "peak_rss_mb": self.peak_rss_mb, "memory_per_stage": self.memory,
                "stages": [r.as_dict() for r in self.rows()]}

    def table(self) -> str:
        """The rows as an aligned plain-text table (what ``hrrkit detect --profile`` prints)."""
        def num(value: float | None, fmt: str) -> str:
            return "-" if value is None else format(value, fmt)

        lines = [f"{'stage':<14}{'seconds':>9}{'calls':>7}{'images/s':>10}{'peak RSS MB':>13}{'growth MB':>11}"]
        for r in self.rows():
            lines.append(f"{r.stage:<14}{r.seconds:>9.2f}{r.calls:>7}{num(r.images_per_s, '.2f'):>10}"
                         f"{num(r.peak_rss_mb, '.0f'):>13}{num(r.growth_mb, '.0f'):>11}")
        overall = self.images / self.total_seconds if self.total_seconds > 0 else None
        lines.append(f"{'all':<14}{self.total_seconds:>9.2f}{'':>7}{num(overall, '.2f'):>10}{self.peak_rss_mb:>13.0f}"
                     f"{'':>11}  ({self.images} images)")
        if not self.memory:
            lines.append("(peak RSS per stage needs a writable /proc/self/clear_refs (Linux); the last row's is "
                         "the process peak)")
        return "\n".join(lines)


def active_profile() -> StageProfile | None:
    """The :class:`StageProfile` active in this context, or ``None``."""
    return _ACTIVE.get()


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Mark a pipeline stage for the active :class:`StageProfile` (a no-op when none is active)."""
    profile = _ACTIVE.get()
    if profile is None:
        yield
        return
    profile._enter(name)
    try:
        yield
    finally:
        profile._exit()
