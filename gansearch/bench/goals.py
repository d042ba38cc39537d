"""The goals the benchmarks check, read from the package's ``goals.json``.

They are data, not code: the README states them and ``goals.json`` holds the numbers,
so that a benchmark never hard-codes a target.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, fields
from importlib import resources

GOALS_FILE = "goals.json"


@dataclass(frozen=True)
class Goals:
    """What each benchmark aims for.

    Attributes:
        scoring_overhead: ``bench evaluate``: scoring time / bare forward time, at most.
        quality_factor: ``bench search``: the quality bar, FID <= factor x teacher's.
        stored_bytes_ratio: ``bench search``: teacher / candidate stored bytes, at least.
        macs_ratio: ``bench search``: teacher / candidate MACs, at least (same candidate).
        engine_speedup: ``bench engines``: throughput of 2 Ray workers / 1 worker, at least.
        engine_overhead: ``bench engines``: Ray's per-candidate overhead as a fraction of
            one local evaluation, below.
        photos_stored_bytes_ratio: ``bench search`` on the photographs benchmark: teacher
            / candidate stored bytes, at least, at the study's PSNR constraint.
        photos_macs_ratio: the same for MACs (same candidate).
    """

    scoring_overhead: float
    quality_factor: float
    stored_bytes_ratio: float
    macs_ratio: float
    engine_speedup: float
    engine_overhead: float
    photos_stored_bytes_ratio: float
    photos_macs_ratio: float

    def compression(self, benchmark: str | None) -> tuple[float, float]:
        """(stored-bytes ratio, MACs ratio) goals of a benchmark (digits' for any other)."""
        if benchmark == "photos":
            return self.photos_stored_bytes_ratio, self.photos_macs_ratio
        return self.stored_bytes_ratio, self.macs_ratio

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Goals:
        """Build from the JSON object; ``about`` is prose and ignored.

        Raises:
            ValueError: for a missing or unknown key, or a value that is not a positive number.
        """
        names = {field.name for field in fields(cls)}
        given = set(data) - {"about"}
        if given != names:
            raise ValueError(
                f"{GOALS_FILE} must hold exactly the goals {sorted(names)}, but got "
                f"{sorted(given)}."
            )
        values = {}
        for name in sorted(names):
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"goal `{name}` must be a positive number, but got {value!r}.")
            values[name] = float(value)
        return cls(**values)


@functools.cache
def load_goals() -> Goals:
    """The goals shipped with gansearch (read once per process)."""
    text = resources.files(__package__).joinpath(GOALS_FILE).read_text(encoding="utf-8")
    return Goals.from_dict(json.loads(text))
