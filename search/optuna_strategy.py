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

The sampler is injected: a *sampler factory* ``seed -> BaseSampler`` (named presets, TPE,
NSGA-II, NSGA-III, GP and random with their options, are built by
:mod:`gansearch.search.registry`). Optuna samplers expose no portable generator state, so
the strategy makes a fresh sampler before every ask, seeded with the ``n``-th child of
``np.random.SeedSequence(seed)`` where ``n`` is the number of trials in its private study.
A proposal therefore depends only on the seed and the history of asks, tells and
observations, never on how many samplers came before; this is what makes resume exact.

Determinism and in-flight behaviour: with the same seed and the same sequence of asks and
tells the proposals are identical. With several proposals in flight, a sampler sees the
ones not yet told as RUNNING trials (TPE's constant liar), so its proposals depend on which
results were told before each ask, and on nothing else.

Resume: :meth:`OptunaStrategy.state_dict` is the seed plus the log of asks, tells and
observations. :meth:`OptunaStrategy.load_state_dict` replays the log, asking the sampler
again for every sampled proposal (which restores what samplers keep in the study, such as
NSGA-II's generations and parents) and checking that it proposes what it proposed then.
A restored strategy therefore continues exactly as the uninterrupted one, at the cost of
re-running the sampler over the history once (seconds for TPE at a few hundred trials,
more for the GP). Proposals in flight when the state was saved are handed out again by
the next asks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from gansearch.search.base import (
    Failure,
    Proposal,
    Strategy,
    check_result,
    child_seed,
    decode_params,
    encode_params,
    entropy,
    in_flight,
    is_ordinal,
    validate_directions,
)
from gansearch.spaces.genes import GeneSpace, Mask

#: Builds a fresh sampler from a seed (``None``: fresh entropy); see the module docstring.
SamplerFactory = Callable[[int | None], optuna.samplers.BaseSampler]

MASK_MODES = ("topk",)
CHOICE_ENCODINGS = ("ordinal", "categorical")
STATE_VERSION = 2


class OptunaStrategy(Strategy):
    """Search a :class:`GeneSpace` with an Optuna sampler through ask/tell.

    Args:
        space: the genes to search.
        directions: ``"minimize"`` / ``"maximize"`` per objective.
        sampler_factory: ``seed -> sampler``, called before every ask (see the module
            docstring); e.g. ``lambda seed: optuna.samplers.TPESampler(seed=seed)``, or a
            named preset of :func:`gansearch.search.registry.sampler_factory`.
        seed: the strategy's seed; ``None`` draws fresh entropy (saved by :meth:`state_dict`,
            so even then a resumed search continues exactly).
        mask_mode: how masks are parameterised; only ``"topk"`` (keep count + importance).
        choice_encoding: ``"ordinal"`` (numeric choices as an integer index) or
            ``"categorical"`` (every choice unordered).
    """

    def __init__(
        self,
        space: GeneSpace,
        directions: Sequence[str],
        *,
        sampler_factory: SamplerFactory,
        seed: int | None = None,
        mask_mode: str = "topk",
        choice_encoding: str = "ordinal",
    ) -> None:
        if not callable(sampler_factory):
            raise ValueError(
                f"`sampler_factory` must be a callable `seed -> sampler`, but got "
                f"{sampler_factory!r}."
            )
        if mask_mode not in MASK_MODES:
            raise ValueError(f"`mask_mode` must be one of {MASK_MODES}, but got {mask_mode!r}.")
        if choice_encoding not in CHOICE_ENCODINGS:
            raise ValueError(
                f"`choice_encoding` must be one of {CHOICE_ENCODINGS}, but got {choice_encoding!r}."
            )
        self.space = space
        self.directions = validate_directions(directions)
        self.sampler_factory = sampler_factory
        self._initial_seed = self._seed = entropy(seed)
        self._choice_encoding = choice_encoding
        self._keep_choices = {
            gene.name: tuple(sorted(set(gene.keep_choices)))
            for gene in space.genes
            if isinstance(gene, Mask)
        }
        self._distributions = self._make_distributions()
        self._study = optuna.create_study(
            directions=list(self.directions), sampler=sampler_factory(child_seed(self._seed, 0))
        )
        self._n_trials = 0  # trials in the private study: asked or observed
        self._running: dict[int, tuple[optuna.Trial, dict[str, Any]]] = {}
        self._enqueued: deque[dict[str, Any]] = deque()
        self._reask: deque[int] = deque()  # in flight when saved, to be handed out again
        self._events: list[dict[str, Any]] = []

    # -- the strategy ------------------------------------------------------------------------

    def ask(self) -> Proposal:
        """The next candidate: one in flight when the state was saved, else an enqueued one
        (verbatim), else the sampler's."""
        if self._reask:
            number = self._reask.popleft()
            return Proposal(number=number, params=dict(self._running[number][1]))
        exact = self._enqueued.popleft() if self._enqueued else None
        trial, params = self._ask(exact)
        self._events.append(
            {
                "event": "ask",
                "params": dict(trial.params),
                "exact": None if exact is None else encode_params(self.space, exact),
            }
        )
        return Proposal(number=trial.number, params=dict(params))

    def tell(
        self,
        proposal: Proposal,
        result: Sequence[float] | Failure,
        constraints: Sequence[float] | None = None,
    ) -> None:
        """Finish the trial of ``proposal``; a :class:`Failure` is told as ``FAIL``.

        Raises:
            ValueError: for a proposal that is not in flight (or one restored from a state
                but not asked again yet), or a malformed result.
        """
        in_flight(self._running, proposal)
        if proposal.number in self._reask:
            raise ValueError(f"proposal {proposal.number} is not in flight (not asked again).")
        values, constraints = check_result(result, constraints, len(self.directions))
        failure = None
        if values is None:
            failure = result.reason if isinstance(result, Failure) else "non-finite values"
        self._tell(proposal.number, values, constraints, failure)
        self._events.append(
            {
                "event": "tell",
                "number": proposal.number,
                "values": values,
                "constraints": constraints,
                "failure": failure,
            }
        )

    def enqueue(self, params: Mapping[str, Any]) -> None:
        """Propose ``params`` (verbatim) at the next ask; the sampler sees its projection.

        Raises:
            ValueError: if ``params`` is not inside the space.
        """
        self._to_internal(params)  # validates
        self._enqueued.append(dict(params))

    def observe(
        self,
        params: Mapping[str, Any],
        result: Sequence[float] | Failure,
        constraints: Sequence[float] | None = None,
    ) -> None:
        """Add a candidate evaluated elsewhere (e.g. by a GA) as a finished trial.

        A mask that is not a top-k mask is projected onto its keep count (nearest keep
        choice), which is all this strategy's parameterisation can represent.
        """
        values, constraints = check_result(result, constraints, len(self.directions))
        internal = self._to_internal(params)
        self._observe(internal, values, constraints)
        self._events.append(
            {"event": "observe", "params": internal, "values": values, "constraints": constraints}
        )

    def reseed(self, seed: int | None) -> None:
        """Seed the samplers of later asks from ``seed`` (the history is kept)."""
        self._seed = entropy(seed)
        self._events.append({"event": "reseed", "seed": self._seed})

    def state_dict(self) -> dict[str, Any]:
        """The seed, the log of asks, tells and observations, and the enqueued params."""
        return {
            "version": STATE_VERSION,
            "seed": self._initial_seed,
            "events": [dict(e) for e in self._events],
            "enqueued": [encode_params(self.space, p) for p in self._enqueued],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replay the log saved by :meth:`state_dict` into this fresh strategy.

        Raises:
            ValueError: for a state of another version, a used strategy, or a log that does
                not replay (saved with another sampler, space or Optuna version).
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"unsupported state version {state.get('version')!r}; known: {STATE_VERSION}."
            )
        if self._events or self._n_trials:
            raise ValueError("`load_state_dict` needs a strategy that has not been used.")
        self._initial_seed = self._seed = int(state["seed"])
        for event in state["events"]:
            self._replay(event)
        self._events = [dict(e) for e in state["events"]]
        self._enqueued = deque(decode_params(self.space, p) for p in state["enqueued"])
        self._reask = deque(sorted(self._running))

    # -- the private study -------------------------------------------------------------------

    def _ask(self, exact: Mapping[str, Any] | None) -> tuple[optuna.Trial, dict[str, Any]]:
        self._study.sampler = self.sampler_factory(child_seed(self._seed, self._n_trials))
        if exact is not None:
            self._study.enqueue_trial(self._to_internal(exact))
        trial = self._study.ask(fixed_distributions=self._distributions)
        self._n_trials += 1
        params = dict(exact) if exact is not None else self._from_internal(trial.params)
        self._running[trial.number] = (trial, params)
        return trial, params

    def _tell(
        self,
        number: int,
        values: Sequence[float] | None,
        constraints: Sequence[float] | None,
        failure: str | None,
    ) -> None:
        trial, _ = self._running.pop(number)
        if values is None:
            trial.set_user_attr("failure", failure)
            self._study.tell(trial, state=TrialState.FAIL)
            return
        for key, value in enumerate(constraints or ()):
            trial.set_constraint(str(key), value)
        self._study.tell(trial, list(values))

    def _observe(
        self,
        internal: Mapping[str, int],
        values: Sequence[float] | None,
        constraints: Sequence[float] | None,
    ) -> None:
        if values is None:
            trial = optuna.trial.create_trial(
                state=TrialState.FAIL, params=dict(internal), distributions=self._distributions
            )
        else:
            trial = optuna.trial.create_trial(
                values=list(values),
                params=dict(internal),
                distributions=self._distributions,
                constraints={str(k): v for k, v in enumerate(constraints or ())} or None,
            )
        self._study.add_trial(trial)
        self._n_trials += 1

    def _replay(self, event: Mapping[str, Any]) -> None:
        kind = event["event"]
        if kind == "ask":
            exact = None if event["exact"] is None else decode_params(self.space, event["exact"])
            trial, _ = self._ask(exact)
            saved = {name: int(v) for name, v in event["params"].items()}
            if dict(trial.params) != saved:
                raise ValueError(
                    f"the saved log does not replay: trial {trial.number} was {saved}, but the "
                    f"sampler now proposes {dict(trial.params)} (the state was saved with "
                    "another sampler, space, seed or Optuna version)."
                )
        elif kind == "tell":
            number = int(event["number"])
            if number not in self._running:
                raise ValueError(f"the saved log tells trial {number}, which is not in flight.")
            self._tell(number, event["values"], event["constraints"], event["failure"])
        elif kind == "observe":
            self._observe(event["params"], event["values"], event["constraints"])
        elif kind == "reseed":
            self._seed = int(event["seed"])
        else:
            raise ValueError(f"unknown event {kind!r} in the saved log.")

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
