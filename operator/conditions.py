"""Small pure helpers that return a new status with a condition, a phase or a history entry."""

from __future__ import annotations

from datetime import datetime

from kuberec.api.status import HISTORY_LENGTH, Condition, HistoryEntry, JobStatus, Phase


def stamp(now: datetime) -> str:
    return now.isoformat(timespec="seconds")


def with_condition(
    status: JobStatus, now: datetime, type_: str, ok: bool | None, reason: str, message: str = "",
    generation: int | None = None,
) -> JobStatus:  # fmt: skip
    """Set one condition; its transition time moves only when its status changes."""
    value = "Unknown" if ok is None else ("True" if ok else "False")
    previous = next((c for c in status.conditions if c.type == type_), None)
    changed = previous is None or previous.status != value
    condition = Condition(
        type=type_, status=value, reason=reason, message=message,
        last_transition_time=stamp(now) if changed else previous.last_transition_time,  # type: ignore[union-attr]
        observed_generation=generation,
    )  # fmt: skip
    others = [c for c in status.conditions if c.type != type_]
    return status.model_copy(update={"conditions": sorted([*others, condition], key=_order)})


def with_phase(
    status: JobStatus, now: datetime, phase: Phase, reason: str, message: str = ""
) -> JobStatus:
    """Move to ``phase``; a change (or a new reason) is appended to the short history."""
    last = status.history[-1] if status.history else None
    history = list(status.history)
    if last is None or (last.phase, last.reason, last.message) != (phase, reason, message):
        history.append(HistoryEntry(time=stamp(now), phase=phase, reason=reason, message=message))
    return status.model_copy(update={"phase": phase, "history": history[-HISTORY_LENGTH:]})


def condition(status: JobStatus, type_: str) -> Condition | None:
    return next((c for c in status.conditions if c.type == type_), None)


_ORDER = ("Ready", "Trained", "Evaluated", "Promoted", "RolledBack")


def _order(c: Condition) -> tuple[int, str]:
    return (_ORDER.index(c.type) if c.type in _ORDER else len(_ORDER), c.type)
