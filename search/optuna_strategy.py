"""Optuna samplers as a gansearch :class:`~gansearch.search.base.Strategy`.

The strategy owns a private in-memory Optuna study and drives it through ask/tell. (The
product records every evaluated candidate in a separate, persistent study; that is the
orchestrator's job, not this module's.)

Encoding of genes as Optuna distributions:

* An ordinal :class:`~gansearch.spaces.genes.Choice` (all choices numeric) becomes an
  ``IntDistribution`` over the *index* into ``choices``, so that TPE's Parzen kernels and
  NSGA-II's crossovers see neighbouring bit-widths / ranks / widths as similar. Other
  choices become a ``CategoricalDistribution`` over the indices. ``choice_encoding=
  "categorical"`` treats every choice as unordered.
* A :class:`~gansearch.spaces.genes.Mask` uses the low-dimensional "keep ratio plus
  importance order" parameterisation (``mask_mode="topk"``): the sampler picks the keep
  count (ordinal index into the sorted ``keep_choices``) and the proposal carries
  ``mask.top(keep)``. A bitstring over hundreds of channels is no space for TPE or a GP.

Constraints use Optuna 5's first-class API: ``Trial.set_constraint(key, value)`` before
``Study.tell`` (``constraints_func`` is deprecated since Optuna 5.0); every sampler here
reads them back through ``FrozenTrial.constraints`` (``<= 0`` is feasible). Failures are
told as ``TrialState.FAIL`` and ignored by the samplers.

Samplers (Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011,
for TPE; Deb et al., "A Fast and Elitist Multiobjective Genetic Algorithm: NSGA-II", IEEE
TEVC 2002; Deb & Jain, "An Evolutionary Many-Objective Optimization Algorithm Using
Reference-Point-Based Nondominated Sorting Approach" (NSGA-III), IEEE TEVC 2014):

* ``"tpe"``: ``TPESampler(multivariate=True, constant_liar=True)``. Proposals in flight are
  treated as RUNNING trials with a pessimistic "lie", so several can be asked at once.
* ``"nsga2"`` / ``"nsga3"``: Optuna's generation logic, ``population_size`` per generation.
* ``"gp"``: ``GPSampler``. Optuna 5's GP handles categorical and integer parameters, several
  objectives (log EHVI) and constraints (log CEHVI), so the full space is supported; it
  runs on torch *inside Optuna* (this module never imports torch) and costs
  seconds per proposal after a few hundred trials, so keep it for small budgets.
* ``"random"``: ``RandomSampler``, the baseline.

Determinism: with the same seed and the same sequence of asks and tells the proposals are
identical. With several proposals in flight, TPE's proposals depend on which results have
been told before each ask (constant liar), not on anything else.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from gansearch.search.base import (
    Failure,
    Proposal,
    check_result,
    encode_params,
    in_flight,
    is_ordinal,
    validate_directions,
)
from gansearch.spaces.genes import GeneSpace, Mask

SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random")
MASK_MODES = ("topk",)
CHOICE_ENCODINGS = ("ordinal", "categorical")


class OptunaStrategy:
    """Search a :class:`GeneSpace` with an Optuna sampler through ask/tell.

    Args:
        space: the genes to search.
        directions: ``"minimize"`` / ``"maximize"`` per objective.
        sampler: one of ``"tpe"``, ``"nsga2"``, ``"nsga3"``, ``"gp"``, ``"random"``.
        seed: seed of the sampler's own generator; ``None`` draws fresh entropy.
        population_size: generation size of ``"nsga2"`` / ``"nsga3"``.
        n_startup_trials: random trials before ``"tpe"`` / ``"gp"`` start modelling.
        mask_mode: how masks are parameterised; only ``"topk"`` (keep count + importance).
        choice_encoding: ``"ordinal"`` (numeric choices as an integer index) or
            ``"categorical"`` (every choice unordered).
    """

    def __init__(
        self,
        space: GeneSpace,
        directions: Sequence[str],
        *,
        sampler: str = "tpe",
        seed: int | None = None,
        population_size: int = 50,
        n_startup_trials: int = 10,
        mask_mode: str = "topk",
        choice_encoding: str = "ordinal",
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"`sampler` must be one of {SAMPLERS}, but got {sampler!r}.")
        if mask_mode not in MASK_MODES:
            raise ValueError(f"`mask_mode` must be one of {MASK_MODES}, but got {mask_mode!r}.")
        if choice_encoding not in CHOICE_ENCODINGS:
            raise ValueError(
                f"`choice_encoding` must be one of {CHOICE_ENCODINGS}, but got {choice_encoding!r}."
            )
        if population_size < 2:
            raise ValueError(f"`population_size >= 2` must hold, but got {population_size=}.")
        if n_startup_trials < 0:
            raise ValueError(f"`n_startup_trials >= 0` must hold, but got {n_startup_trials=}.")
        self.space = space
        self.directions = validate_directions(directions)
        self.sampler_name = sampler
        self._seed = seed
        self._population_size = population_size
        self._n_startup_trials = n_startup_trials
        self._choice_encoding = choice_encoding
        self._keep_choices = {
            gene.name: tuple(sorted(set(gene.keep_choices)))
            for gene in space.genes
            if isinstance(gene, Mask)
        }
        self._distributions = self._make_distributions()
        self._study = optuna.create_study(
            directions=list(self.directions), sampler=self._make_sampler(seed)
        )
        self._running: dict[int, optuna.Trial] = {}
        self._enqueued: deque[dict[str, Any]] = deque()

    # -- protocol ---------------------------------------------------------------------------

    def ask(self) -> Proposal:
        """Ask the sampler for the next candidate (an enqueued one first, verbatim)."""
        exact = None
        if self._enqueued:
            exact = self._enqueued.popleft()
            self._study.enqueue_trial(self._to_internal(exact))
        trial = self._study.ask(fixed_distributions=self._distributions)
        self._running[trial.number] = trial
        params = exact if exact is not None else self._from_internal(trial.params)
        return Proposal(number=trial.number, params=params)

    def tell(
        self,
        proposal: Proposal,
        result: Sequence[float] | Failure,
        constraints: Sequence[float] | None = None,
    ) -> None:
        """Finish the trial of ``proposal``; a :class:`Failure` is told as ``FAIL``.

        Raises:
            ValueError: for a proposal that is not in flight, or a malformed result.
        """
        trial = in_flight(self._running, proposal)
        values, constraints = check_result(result, constraints, len(self.directions))
        del self._running[proposal.number]
        if values is None:
            reason = result.reason if isinstance(result, Failure) else "non-finite values"
            trial.set_user_attr("failure", reason)
            self._study.tell(trial, state=TrialState.FAIL)
            return
        for key, value in enumerate(constraints or ()):
            trial.set_constraint(str(key), value)
        self._study.tell(trial, list(values))

    # -- optional hooks ----------------------------------------------------------------------

    def enqueue(self, params: Mapping[str, Any]) -> None:
        """Propose ``params`` (verbatim) at the next ask; the sampler sees its projection."""
        self._to_internal(params)  # validates
        self._enqueued.append(dict(params))

    def observe(
        self,
        params: Mapping[str, Any],
        result: Sequence[float] | Failure,
        constraints: Sequence[float] | None = None,
    ) -> None:
        """Add a candidate evaluated elsewhere (e.g. another island) as a finished trial.

        A mask that is not a top-k mask is projected onto its keep count (nearest keep
        choice), which is all this strategy's parameterisation can represent.
        """
        values, constraints = check_result(result, constraints, len(self.directions))
        internal = self._to_internal(params)
        if values is None:
            trial = optuna.trial.create_trial(
                state=TrialState.FAIL, params=internal, distributions=self._distributions
            )
        else:
            trial = optuna.trial.create_trial(
                values=list(values),
                params=internal,
                distributions=self._distributions,
                constraints={str(k): v for k, v in enumerate(constraints or ())} or None,
            )
        self._study.add_trial(trial)

    def reseed(self, seed: int | None) -> None:
        """Replace the sampler by a fresh one seeded with ``seed`` (history is kept)."""
        self._seed = seed
        self._study.sampler = self._make_sampler(seed)

    def state_dict(self) -> dict[str, Any]:
        """Finished trials (params as indices) and the seed, JSON-serialisable.

        Proposals still in flight are not saved: after :meth:`load_state_dict` they are
        simply asked again. The sampler is re-seeded on load from the seed and the number of
        finished trials, so a resumed search is deterministic but not bit-identical to an
        uninterrupted one (Optuna samplers expose no portable RNG state).
        """
        trials = []
        for trial in self._study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)
        ):
            trials.append(
                {
                    "params": {name: int(v) for name, v in trial.params.items()},
                    "state": trial.state.name,
                    "values": list(trial.values) if trial.values is not None else None,
                    "constraints": dict(trial.constraints) or None,
                }
            )
        return {"version": 1, "sampler": self.sampler_name, "seed": self._seed, "trials": trials}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the history saved by :meth:`state_dict` into a fresh strategy.

        Raises:
            ValueError: for a state of another version or sampler, or a used strategy.
        """
        if state.get("version") != 1:
            raise ValueError(f"unsupported state version {state.get('version')!r}; known: 1.")
        if state["sampler"] != self.sampler_name:
            raise ValueError(
                f"state was saved by sampler {state['sampler']!r}, not {self.sampler_name!r}."
            )
        if self._study.trials:
            raise ValueError("`load_state_dict` needs a strategy that has not been used.")
        for saved in state["trials"]:
            self._study.add_trial(
                optuna.trial.create_trial(
                    state=TrialState[saved["state"]],
                    values=saved["values"],
                    params=saved["params"],
                    distributions=self._distributions,
                    constraints=saved["constraints"],
                )
            )
        seed = state["seed"]
        self.reseed(None if seed is None else int(seed) + len(state["trials"]))
        self._seed = seed

    # -- encoding ---------------------------------------------------------------------------

    def _make_distributions(self) -> dict[str, BaseDistribution]:
        distributions: dict[str, BaseDistribution] = {}
        for gene in self.space.genes:
            if isinstance(gene, Mask):
                keep = self._keep_choices[gene.name]
                distributions[gene.name] = IntDistribution(0, len(keep) - 1)
            elif self._choice_encoding == "ordinal" and is_ordinal(gene):
                distributions[gene.name] = IntDistribution(0, len(gene.choices) - 1)
            else:
                distributions[gene.name] = CategoricalDistribution(tuple(range(len(gene.choices))))
        return distributions

    def _from_internal(self, internal: Mapping[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for gene in self.space.genes:
            index = int(internal[gene.name])
            if isinstance(gene, Mask):
                params[gene.name] = gene.top(self._keep_choices[gene.name][index])
            else:
                params[gene.name] = gene.choices[index]
        return params

    def _to_internal(self, params: Mapping[str, Any]) -> dict[str, int]:
        encoded = encode_params(self.space, params)  # validates
        internal: dict[str, int] = {}
        for gene in self.space.genes:
            if isinstance(gene, Mask):
                keep = self._keep_choices[gene.name]
                kept = sum(encoded[gene.name])
                internal[gene.name] = min(range(len(keep)), key=lambda i: (abs(keep[i] - kept), i))
            else:
                internal[gene.name] = int(encoded[gene.name])
        return internal

    def _make_sampler(self, seed: int | None) -> optuna.samplers.BaseSampler:
        name = self.sampler_name
        if name == "tpe":
            return optuna.samplers.TPESampler(
                multivariate=True,
                constant_liar=True,
                n_startup_trials=self._n_startup_trials,
                seed=seed,
            )
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=self._population_size, seed=seed)
        if name == "nsga3":
            return optuna.samplers.NSGAIIISampler(population_size=self._population_size, seed=seed)
        if name == "gp":
            return optuna.samplers.GPSampler(
                n_startup_trials=self._n_startup_trials,
                seed=seed,
                warn_independent_sampling=False,
            )
        return optuna.samplers.RandomSampler(seed=seed)
