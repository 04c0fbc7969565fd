"""The citizen model and the stand-in window system (综合受理系统).

A window's day, in simulated seconds: a clerk serves one case after another (exponential
service time); at the end of each case the window system posts an invitation to the gateway
(POST /api/v1/invitations); the citizen at the counter then
  - presses one button after a short think time, with a configurable grade distribution, or
  - walks away without pressing (the device's countdown ends -> "unrated"), or
  - presses twice (the second press lands in the thanks cooldown -> "extra").
Between cases, now and then, someone walks up and presses with no invitation ("walkup").

Everything random comes from one seeded random.Random, so a run can be replayed. Simulated
seconds become real seconds through `SimClock.speed` (see docs/simulator.md).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from protocol import grades

# Example distribution from the issue: 85 / 10 / 3 / 1.5 / 0.5 percent.
DEFAULT_GRADE_WEIGHTS: dict[str, float] = {
    grades.VERY_SATISFIED: 85.0,
    grades.SATISFIED: 10.0,
    grades.BASIC: 3.0,
    grades.DISSATISFIED: 1.5,
    grades.VERY_DISSATISFIED: 0.5,
}


class CitizenConfigError(ValueError):
    """A bad citizen-model setting; the message names it."""


@dataclass(frozen=True)
class CitizenProfile:
    """How citizens behave. Times are simulated seconds."""

    grade_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_GRADE_WEIGHTS))
    p_no_press: float = 0.05         # leaves without rating -> unrated
    p_double: float = 0.03           # presses again right after the first -> extra
    p_walkup: float = 0.03           # per case: a walk-up press before the next case
    service_s: float = 90.0          # mean time a clerk spends on one case
    think_s: float = 4.0             # mean time from invitation shown to the press
    double_gap_s: float = 1.0        # gap between the two presses of a double press

    def validate(self) -> None:
        for name in ("p_no_press", "p_double", "p_walkup"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise CitizenConfigError(f"{name} must be a probability in 0..1, got {v}")
        if set(self.grade_weights) - set(grades.GRADES):
            raise CitizenConfigError(
                "grade weights name unknown grades: %s (use %s)"
                % (sorted(set(self.grade_weights) - set(grades.GRADES)), " ".join(grades.GRADES)))
        if any(w < 0 for w in self.grade_weights.values()) or sum(self.grade_weights.values()) <= 0:
            raise CitizenConfigError("grade weights must be >= 0 and not all 0")
        for name in ("service_s", "think_s", "double_gap_s"):
            if getattr(self, name) <= 0:
                raise CitizenConfigError(f"{name} must be > 0")


def parse_grade_weights(text: str) -> dict[str, float]:
    """'vs=85,s=10,bs=3,d=1.5,vd=0.5' -> weights (grades left out get weight 0)."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in grades.GRADES:
            raise CitizenConfigError(
                f"grade weight {part!r}: expected CODE=WEIGHT with CODE one of {' '.join(grades.GRADES)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise CitizenConfigError(f"grade weight {part!r}: {value!r} is not a number") from None
    return weights


class SimClock:
    """Simulated seconds since the run started; speed s means s simulated seconds per real one."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise CitizenConfigError("speed must be > 0")
        self.speed = speed
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    async def sleep(self, sim_s: float) -> None:
        await asyncio.sleep(max(0.0, sim_s / self.speed))


@dataclass(frozen=True)
class Window:
    """One service window with its clerk, and the device bound to it."""

    window_id: str
    staff_account: str
    staff_name: str
    dept_code: str
    dept_name: str
    device_id: str


@dataclass
class Case:
    case_no: str
    task_code: str
    task_name: str
    window: Window
    invitation_id: str | None = None


# A few service items so the reports look like a hall's day.
TASKS = (
    ("11370303MB2851234N1000101", "居民身份证换领"),
    ("11370303MB2851234N1000102", "户口迁移登记"),
    ("11370303MB2851234N2000201", "营业执照设立登记"),
    ("11370303MB2851234N3000301", "社会保险参保登记"),
    ("11370303MB2851234N4000401", "不动产登记"),
)


class Decisions:
    """The seeded random choices of the citizen model, in one place."""

    def __init__(self, profile: CitizenProfile, seed: int) -> None:
        profile.validate()
        self.p = profile
        self.rng = random.Random(seed)
        self._grades = [g for g in grades.GRADES if profile.grade_weights.get(g, 0) > 0]
        self._weights = [float(profile.grade_weights[g]) for g in self._grades]

    def grade(self) -> str:
        return self.rng.choices(self._grades, weights=self._weights)[0]

    def presses(self) -> int:
        """0 (walks away), 1, or 2 (double press)."""
        r = self.rng.random()
        if r < self.p.p_no_press:
            return 0
        if r < self.p.p_no_press + self.p.p_double:
            return 2
        return 1

    def walkup(self) -> bool:
        return self.rng.random() < self.p.p_walkup

    def service_time(self) -> float:
        return self.rng.expovariate(1.0 / self.p.service_s)

    def think_time(self) -> float:
        # Log-normal around the mean, capped so a slow citizen still presses within a 60 s countdown.
        return min(self.rng.lognormvariate(0.0, 0.5) * self.p.think_s, 40.0)

    def task(self) -> tuple[str, str]:
        return self.rng.choice(TASKS)


class InvitationError(Exception):
    """The gateway refused an invitation (its answer says why)."""


class WindowSystem:
    """The stand-in 综合受理系统: posts invitations to the gateway's HTTP API."""

    def __init__(self, base_url: str, token: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.session = session
        self.posted = 0
        self.refused = 0
        self._case_counter = 0

    def new_case(self, window: Window, decisions: Decisions, day: str) -> Case:
        self._case_counter += 1
        code, name = decisions.task()
        # Unique per run: the store enforces one rating per case_no.
        case_no = "%s%s%05d" % (day, window.window_id, self._case_counter)
        return Case(case_no=case_no, task_code=code, task_name=name, window=window)

    async def invite(self, case: Case, timeout_s: float = 10.0) -> str:
        """POST the invitation; returns its id. Retries while the gateway is down (killed by a fault)."""
        body = {
            "window": case.window.window_id,
            "case_no": case.case_no,
            "task_code": case.task_code,
            "task_name": case.task_name,
            "dept_code": case.window.dept_code,
            "applicant_type": 1,
        }
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                async with self.session.post(
                        self.base_url + "/api/v1/invitations", json=body,
                        headers={"Authorization": "Bearer " + self.token},
                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    answer: Any = await resp.json(content_type=None)
                    if resp.status in (200, 201):
                        inv = None
                        if isinstance(answer, dict):
                            inv = answer.get("id") or answer.get("invitation_id")
                        if not isinstance(inv, str):
                            raise InvitationError(f"gateway answered {resp.status} without an id: {answer!r}")
                        self.posted += 1
                        case.invitation_id = inv
                        return inv
                    if resp.status < 500:
                        self.refused += 1
                        raise InvitationError(f"gateway refused invitation {case.case_no}: "
                                              f"{resp.status} {answer!r}")
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass     # gateway restarting: the window system retries, as a real one would
            if time.monotonic() >= deadline:
                self.refused += 1
                raise InvitationError(f"gateway unreachable for invitation {case.case_no}")
            await asyncio.sleep(0.2)
