"""Per-layer sensitivity: the quality cost of each single compression choice (torch-free).

A :class:`SensitivityTable` holds, for every gene of a study's space and every value in
its domain, what applying *only* that choice to the teacher does to the study's quality
metric (:mod:`gansearch.sensitivity_measure` measures it). From the table,
:func:`guided_plans` builds starting plans for the search in the spirit of HAWQ (Dong et
al., "HAWQ: Hessian AWare Quantization", ICCV 2019) and AIMET's per-layer sensitivity
analysis: each unit (a layer's weight encoding, rank or activation bits, a group's mask)
takes its cheapest value whose own quality loss stays within an even share of the loss
the study's constraint allows; :func:`harmful_choices` lists the choices that break a
constraint on their own.

Quality losses are added in an additive domain: a metric in dB (PSNR) is summed as mean
squared error, ``10 ** (-PSNR / 10)``, since independent errors add in squared error;
every other metric is summed as it is (a first-order approximation, as in HAWQ).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gansearch.compress.plan import CompressionPlan
from gansearch.evaluators.objectives import METRICS, Constraint
from gansearch.files import atomic_path, write_json_atomic
from gansearch.spaces.genes import Choice, Mask
from gansearch.spaces.joint import MASK_SOURCE, SOURCE, JointSpace

TABLE_VERSION = 1
CACHE_FILE = "sensitivity.json"
FAMILIES = {
    "mask": "prune",
    "bits": "bits",
    "codebook": "codebook",
    "rank": "lowrank",
    "activation_bits": "activation_bits",
    "norm_dtype": "norm_dtype",
}
"""Gene name prefix -> the ``space:`` family it belongs to (``width`` genes are skipped)."""
_ASPECT = {"bits": "weight", "codebook": "weight"}
"""Genes that set the same thing in a plan (a codebook overrides the bits)."""
SHARE_MULTIPLES = (1, 2, 4, 8, 16)
"""Guided plan ``m`` gives each of the ``L`` units ``m / L`` of the allowed quality loss."""


def split_gene(name: str) -> tuple[str, str]:
    """``"bits:up"`` -> ``("bits", "up")``; ``"norm_dtype"`` -> ``("norm_dtype", "*")``."""
    prefix, _, target = name.partition(":")
    return prefix, target or "*"


@dataclass(frozen=True)
class SensitivityEntry:
    """One single choice applied to the teacher, and what it did.

    Attributes:
        gene: the gene's name (``bits:up``); ``value`` is in the gene's own form, except
            for masks, where it is the number of channels kept (the most important ones).
        label: the value as a heatmap column shows it (``keep 0.50``, ``int4``, ...).
        quality: the quality metric's value, or ``None`` for a failure.
        delta: its change from the teacher, positive = worse (the metric's direction).
        spread: the noise floor of ``quality`` (std over evaluation seeds).
        saved: cost metric -> the amount saved compared with the teacher.
        breaks: the constraints the teacher meets and this choice alone breaks.
        failure: why scoring failed, or ``None``.
        identity: whether the choice is the teacher's own (scored as the teacher).
    """

    gene: str
    value: Any
    label: str
    quality: float | None
    delta: float | None
    spread: float
    saved: Mapping[str, float]
    breaks: tuple[str, ...] = ()
    failure: str | None = None
    identity: bool = False

    @property
    def family(self) -> str:
        return FAMILIES[split_gene(self.gene)[0]]

    @property
    def target(self) -> str:
        return split_gene(self.gene)[1]

    @property
    def unit(self) -> tuple[str, str]:
        """What the choice sets: (layer or group, aspect); bits and codebook share one."""
        prefix, target = split_gene(self.gene)
        return target, _ASPECT.get(prefix, prefix)


@dataclass(frozen=True)
class SensitivityTable:
    """Every single-choice entry of one study, with the teacher's figures they compare to.

    Attributes:
        key: the cache key (teacher weights, protocol, space, objectives, constraints).
        metric: the quality metric (the study's first quality objective, or
            ``teacher_psnr``); ``direction`` is its direction.
        teacher: metric name -> the teacher's value (the quality metric and the costs).
        teacher_spread: the noise floor of the teacher's quality.
        constraints: the study's constraints, as written.
        entries: one per (gene, value).
        seconds: how long measuring took.
    """

    key: str
    metric: str
    direction: str
    teacher: Mapping[str, float]
    teacher_spread: float
    constraints: tuple[str, ...]
    entries: tuple[SensitivityEntry, ...]
    seconds: float = 0.0
    version: int = field(default=TABLE_VERSION)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensitivityTable:
        entries = tuple(
            SensitivityEntry(**{**entry, "breaks": tuple(entry["breaks"])})
            for entry in data["entries"]
        )
        return cls(
            **{
                **data,
                "constraints": tuple(data["constraints"]),
                "entries": entries,
            }
        )

    def additive(self, delta: float) -> float:
        """A quality loss in the additive domain (see the module docs)."""
        if METRICS[self.metric].unit != "dB":
            return delta
        teacher = self.teacher[self.metric]
        return 10 ** (-(teacher - delta) / 10) - 10 ** (-teacher / 10)


# --------------------------------------------------------------------------- cache


def read_cached(path: Path, key: str) -> SensitivityTable | None:
    """The table cached at ``path`` if its key is ``key``; ``None`` when absent or stale."""
    try:
        data = json.loads(path.read_text())
        table = SensitivityTable.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return table if table.key == key and table.version == TABLE_VERSION else None


def write_cache(path: Path, table: SensitivityTable) -> None:
    """Write ``table`` to ``path`` atomically."""
    write_json_atomic(path, table.to_dict(), indent=1)


# --------------------------------------------------------------------------- search use


def quality_budget(table: SensitivityTable) -> float | None:
    """The quality loss the study's constraints allow on the table's metric, in its units.

    ``psnr >= teacher - 0.5`` allows 0.5 dB, ``fid <= 1.1 * teacher`` allows 0.1 x the
    teacher's FID, ``teacher_psnr >= 30`` allows 100 - 30 = 70 dB; the tightest one wins.
    ``None`` when no constraint bounds the metric.
    """
    teacher = table.teacher[table.metric]
    budgets = []
    for text in table.constraints:
        constraint = Constraint.parse(text)
        if constraint.metric != table.metric:
            continue
        limit = constraint.threshold({table.metric: teacher})
        budgets.append(max(0.0, limit - teacher if constraint.op == "<=" else teacher - limit))
    return min(budgets) if budgets else None


def harmful_choices(table: SensitivityTable) -> list[tuple[str, Any]]:
    """(gene, value) pairs that alone break a constraint the teacher meets, or fail."""
    return [(e.gene, e.value) for e in table.entries if e.breaks or e.failure is not None]


def identity_value(gene: Choice | Mask) -> Hashable:
    """The gene's value closest to the teacher: no pruning, float, no codebook, no rank."""
    if isinstance(gene, Mask):
        return (True,) * gene.length
    prefix, _ = split_gene(gene.name)
    neutral = {
        SOURCE: MASK_SOURCE,
        "bits": 32,
        "codebook": 0,
        "rank": 0.0,
        "activation_bits": 32,
        "norm_dtype": "float32",
    }.get(prefix)
    if neutral is not None and neutral in gene.choices:
        return gene.choices[gene.choices.index(neutral)]
    if prefix == "codebook" or prefix == "width":
        return max(gene.choices)  # the largest codebook / width is the closest
    return gene.choices[-1]  # ascending precision (bits, activation bits, norm dtypes)


def identity_params(space: JointSpace) -> dict[str, Any]:
    """Params with every gene at :func:`identity_value` (the teacher, when in the space)."""
    return {gene.name: identity_value(gene) for gene in space.genes.genes}


def gene_value(space: JointSpace, gene: str, value: Any) -> Any:
    """A table value as the gene takes it (a mask's keep count -> its top-k mask)."""
    found = space.genes[gene]
    return found.top(int(value)) if isinstance(found, Mask) else value


@dataclass(frozen=True)
class GuidedPlan:
    """A sensitivity-guided starting plan.

    Attributes:
        share: the fraction of the allowed quality loss each unit may spend (``m / L``).
        choices: (gene, table value) of every non-identity choice taken.
        predicted: the sum of the choices' own losses as a fraction of the allowed loss
            (additive domain); at most ``share * L``.
        params: the plan's params in the space.
        plan: the decoded plan.
    """

    share: float
    choices: tuple[tuple[str, Any], ...]
    predicted: float
    params: Mapping[str, Any]
    plan: CompressionPlan


def relative_saving(table: SensitivityTable, entry: SensitivityEntry) -> float:
    """The entry's savings, each as a fraction of the teacher's cost, summed."""
    return sum(
        saved / table.teacher[name]
        for name, saved in entry.saved.items()
        if table.teacher.get(name, 0) > 0
    )


def guided_plans(
    table: SensitivityTable,
    space: JointSpace,
    constraint_budget: float | None,
    n: int = 3,
    multiples: Sequence[int] = SHARE_MULTIPLES,
) -> list[GuidedPlan]:
    """Up to ``n`` distinct plans: per unit, the cheapest value within a share of the budget.

    For ``m`` in ``multiples``, each of the ``L`` units (a layer's weight encoding, rank or
    activation bits, a group's mask, the norm dtype) takes the value with the largest
    :func:`relative_saving` whose own loss (additive domain) is at most ``m / L`` of
    ``constraint_budget``; a unit with no such value stays at the teacher's. Failed
    choices and those that break a constraint alone are never taken. Plans equal to the
    teacher's, or to an earlier plan, are dropped.

    Args:
        table: the measured table.
        space: the study's space (genes the table does not name keep the teacher's value).
        constraint_budget: the allowed quality loss in the metric's units
            (:func:`quality_budget`); ``None`` gives no plans.
        n: the most plans to return.
        multiples: the values of ``m`` tried, in order.
    """
    if constraint_budget is None or n <= 0:
        return []
    budget = table.additive(constraint_budget)
    usable: dict[tuple[str, str], list[SensitivityEntry]] = {}
    for entry in table.entries:
        ok = entry.delta is not None and not entry.breaks and entry.failure is None
        if ok and not entry.identity and entry.gene in space.genes.names:
            usable.setdefault(entry.unit, []).append(entry)
    if not usable or budget <= 0:
        return []
    base = identity_params(space)
    plans: list[GuidedPlan] = []
    seen = {space.decode(base).to_json()}
    for m in multiples:
        if len(plans) >= n:
            break
        share = m / len(usable)
        params, choices, spent = dict(base), [], 0.0
        for entries in usable.values():
            within = [e for e in entries if table.additive(e.delta) <= share * budget]
            best = max(within, key=lambda e: (relative_saving(table, e), -e.delta), default=None)
            if best is None or relative_saving(table, best) <= 0:
                continue
            params[best.gene] = gene_value(space, best.gene, best.value)
            choices.append((best.gene, best.value))
            spent += max(0.0, table.additive(best.delta))
        plan = space.decode(params)
        if plan.to_json() in seen:
            continue
        seen.add(plan.to_json())
        plans.append(GuidedPlan(share, tuple(choices), spent / budget, params, plan))
    return plans


# --------------------------------------------------------------------------- heatmap


def plot_heatmap(table: SensitivityTable, path: Path) -> None:
    """A PNG heatmap: rows = layers and groups, columns = each family's values, colour =
    the quality loss (red = worse, blue = better than the teacher), clipped at twice the
    allowed loss (:func:`quality_budget`) so that one ruinous choice does not wash out the
    rest. Each cell shows its loss; ``!`` marks a choice that breaks a constraint alone,
    ``x`` a failed one, and a blank cell a value the row does not have."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    rows = list(dict.fromkeys(e.target for e in table.entries))
    columns = list(dict.fromkeys((e.family, e.label) for e in table.entries))
    grid = np.full((len(rows), len(columns)), np.nan)
    figure, axes = plt.subplots(
        figsize=(max(6.0, 0.5 * len(columns) + 3), max(3.0, 0.4 * len(rows) + 2))
    )
    texts = {}
    for e in table.entries:
        at = rows.index(e.target), columns.index((e.family, e.label))
        if e.delta is not None:
            grid[at] = e.delta
        texts[at] = "x" if e.delta is None else f"{e.delta:.2g}" + ("!" if e.breaks else "")
    finite = np.abs(grid[np.isfinite(grid)])
    limit = quality_budget(table) or (float(np.percentile(finite, 90)) if finite.size else 0.0)
    limit = limit if limit > 0 else 1.0
    norm = TwoSlopeNorm(vmin=-limit, vcenter=0.0, vmax=2 * limit)
    image = axes.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", norm=norm, aspect="auto")
    for (r, c), text in texts.items():
        dark = np.isfinite(grid[r, c]) and abs(float(norm(grid[r, c])) - 0.5) > 0.35
        axes.text(c, r, text, ha="center", va="center", fontsize=6, color="w" if dark else "k")
    axes.set_xticks(range(len(columns)), [f"{f}\n{label}" for f, label in columns], fontsize=7)
    axes.tick_params(axis="x", labelrotation=90)
    axes.set_yticks(range(len(rows)), rows, fontsize=7)
    for c in range(1, len(columns)):
        if columns[c][0] != columns[c - 1][0]:
            axes.axvline(c - 0.5, color="0.3", linewidth=1)
    unit = METRICS[table.metric].unit
    teacher = f"{table.teacher[table.metric]:.4g} {unit}".strip()
    axes.set_title(
        f"{table.metric} loss of each single choice (teacher {teacher}; positive = worse, "
        "! = breaks a constraint alone)",
        fontsize=9,
    )
    figure.colorbar(image, ax=axes, extend="both", label=f"{table.metric} loss {unit}".strip())
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
