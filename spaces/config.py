"""The ``space:`` section of a study YAML: which compression families are searched.

Every family can be restricted (its list of values) or switched off. YAML reads ``off``
/ ``no`` as ``False`` and ``on`` / ``yes`` as ``True``; both are accepted, as is ``null``:

.. code-block:: yaml

    space:
      prune: {min_keep: 0.25, keep_ratios: [0.25, 0.375, 0.5, 0.625, 0.75, 1.0]}  # or off
      ofa: off                       # or {widths: [0.25, 0.5, 0.75, 1.0]} (needs a supernet)
      bits: [2, 3, 4, 6, 8, 16, 32]  # weight bits per layer: 1 = binary, 16/32 = float
      codebook: [0, 4, 16, 64]       # k-means codebook size per layer; 0 = no codebook
      lowrank: {ratios: [0, 0.25, 0.5]}  # SVD rank as a fraction of full rank; 0 = off
      activation_bits: off           # or e.g. [4, 8, 32]; 32 = float activations
      norm_dtype: [float32]          # or [float16, float32]

``on`` (``True``) switches a family on with its default values. ``off`` means: no
pruning masks (``prune``), no supernet widths (``ofa``), float32 weights unless a codebook
is chosen (``bits``), no codebook (``codebook``), no factorisation (``lowrank``), float
activations (``activation_bits``), float32 norm parameters (``norm_dtype``).

The defaults suit the digits study: structured pruning, per-layer weight bits and
codebooks, and low-rank are searched; activation quantisation is off because it is only
simulated here (it changes no objective of the digits study except quality); OFA widths
are off until a supernet has been trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from gansearch.compress.plan import ACTIVATION_BITS, NORM_DTYPES
from gansearch.errors import ConfigError

TERNARY = "ternary"
# Weight bit values a study may list, and the encoding spec each one means.
_BITS_SPECS: dict[int | str, str] = {
    1: "binary",
    TERNARY: TERNARY,
    **{b: f"int{b}" for b in range(2, 9)},
    16: "float16",
    32: "float32",
}
# Ordering by precision (ternary stores 2 bits but has log2(3) ~ 1.58 bits of levels).
_BITS_ORDER: dict[int | str, float] = {
    **{b: float(b) for b in _BITS_SPECS if isinstance(b, int)},
    TERNARY: 1.58,
}
_MIN_CODEBOOK, _MAX_CODEBOOK = 2, 256


def bits_spec(bits: int | str) -> str:
    """The weight encoding spec of one ``bits`` entry (``4 -> "int4"``, ``32 -> "float32"``)."""
    return _BITS_SPECS[bits]


def _off_or_on(value: Any) -> Any:
    """YAML ``off``/``null`` -> None (family off); ``on`` -> {} (family on with defaults)."""
    if value is False or value is None:
        return None
    if value is True:
        return {}
    if not isinstance(value, (Mapping, BaseModel)):
        raise ValueError(f"must be a mapping of options, `on` or `off`, got {value!r}")
    return value


def _distinct_sorted(values: list[Any], key: Any = None) -> tuple[Any, ...]:
    if len(values) == 0:
        raise ValueError("must list at least one value (or be `off`)")
    if len(set(values)) != len(values):
        raise ValueError(f"repeats a value: {values}")
    return tuple(sorted(values, key=key))


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PruneSpace(_Section):
    """Structured channel pruning: one keep-mask gene per prunable group.

    Attributes:
        min_keep: Every group keeps at least ``ceil(min_keep * channels)`` channels.
        keep_ratios: Keep fractions offered to strategies that search "keep the top-k
            most important channels" instead of bitstrings; each must be >= ``min_keep``.
    """

    min_keep: float = 0.25
    keep_ratios: tuple[float, ...] = (0.25, 0.375, 0.5, 0.625, 0.75, 1.0)

    @field_validator("min_keep", mode="before")
    @classmethod
    def _valid_min_keep(cls, value: Any) -> float:
        if not _is_number(value) or not 0.0 < value <= 1.0:
            raise ValueError(f"must be a fraction in (0, 1], got {value!r}")
        return float(value)

    @field_validator("keep_ratios", mode="before")
    @classmethod
    def _valid_keep_ratios(cls, value: Any) -> tuple[float, ...]:
        values = _as_list(value)
        bad = [v for v in values if not _is_number(v) or not 0.0 < v <= 1.0]
        if bad:
            raise ValueError(f"every keep ratio must be a fraction in (0, 1], got {bad[0]!r}")
        return _distinct_sorted([float(v) for v in values])

    @model_validator(mode="after")
    def _ratios_above_min_keep(self) -> PruneSpace:
        below = [r for r in self.keep_ratios if r < self.min_keep]
        if below:
            raise ValueError(
                f"keep_ratios {below} lie below min_keep={self.min_keep}; raise them or "
                "lower min_keep"
            )
        return self


class OfaSpace(_Section):
    """Once-for-all supernet widths: one width gene per prunable group.

    Attributes:
        widths: Width fractions; group ``g`` of ``C`` channels may take
            ``max(1, round(w * C))`` leading channels (the rounding of the supernet).
    """

    widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)

    @field_validator("widths", mode="before")
    @classmethod
    def _valid_widths(cls, value: Any) -> tuple[float, ...]:
        values = _as_list(value)
        bad = [v for v in values if not _is_number(v) or not 0.0 < v <= 1.0]
        if bad:
            raise ValueError(f"every width must be a fraction in (0, 1], got {bad[0]!r}")
        return _distinct_sorted([float(v) for v in values])


class LowRankSpace(_Section):
    """SVD low-rank factorisation: one rank gene per factorisable layer.

    Attributes:
        ratios: Ranks as fractions of the layer's full rank after pruning; 0 = no
            factorisation. See :meth:`gansearch.spaces.joint.JointSpace.decode` for the
            exact mapping to integer ranks.
    """

    ratios: tuple[float, ...] = (0.0, 0.25, 0.5)

    @field_validator("ratios", mode="before")
    @classmethod
    def _valid_ratios(cls, value: Any) -> tuple[float, ...]:
        values = _as_list(value)
        bad = [v for v in values if not _is_number(v) or not 0.0 <= v <= 1.0]
        if bad:
            raise ValueError(f"every rank ratio must be a fraction in [0, 1], got {bad[0]!r}")
        return _distinct_sorted([float(v) for v in values])


class SpaceConfig(_Section):
    """Which compression families the joint space searches, and over which values.

    ``None`` means the family is off (YAML ``off`` or ``null``); see the module docs.

    Attributes:
        prune: Channel pruning masks.
        ofa: Supernet widths (off by default; needs a trained supernet).
        bits: Weight bit widths per layer, ascending precision: ``1`` (binary),
            ``"ternary"``, ``2..8`` (affine int), ``16`` (float16), ``32`` (float32).
        codebook: Codebook sizes per layer (``0`` = none, else 2..256). A codebook size
            above 0 overrides the layer's ``bits``.
        lowrank: Low-rank rank ratios.
        activation_bits: Activation bits per layer (2..8, 32 = float).
        norm_dtype: Storage dtypes of norm parameters and biases (one gene).
    """

    prune: PruneSpace | None = PruneSpace()
    ofa: OfaSpace | None = None
    bits: tuple[int | str, ...] | None = (2, 3, 4, 6, 8, 16, 32)
    codebook: tuple[int, ...] | None = (0, 4, 16, 64)
    lowrank: LowRankSpace | None = LowRankSpace()
    activation_bits: tuple[int, ...] | None = None
    norm_dtype: tuple[str, ...] = ("float32",)

    @field_validator("prune", "ofa", "lowrank", mode="before")
    @classmethod
    def _section_off_or_on(cls, value: Any) -> Any:
        return _off_or_on(value)

    @field_validator("bits", mode="before")
    @classmethod
    def _valid_bits(cls, value: Any) -> tuple[int | str, ...] | None:
        if value is False or value is None:
            return None
        if value is True:
            return cls.model_fields["bits"].default
        values = _as_list(value)
        for v in values:
            if (isinstance(v, bool) or not isinstance(v, (int, str))) or v not in _BITS_SPECS:
                raise ValueError(
                    f"every entry must be 1 (binary), 'ternary', 2..8, 16 or 32 (float), got {v!r}"
                )
        return _distinct_sorted(values, key=_BITS_ORDER.__getitem__)

    @field_validator("codebook", mode="before")
    @classmethod
    def _valid_codebook(cls, value: Any) -> tuple[int, ...] | None:
        if value is False or value is None:
            return None
        if value is True:
            return cls.model_fields["codebook"].default
        values = _as_list(value)
        for v in values:
            if (
                isinstance(v, bool)
                or not isinstance(v, int)
                or not (v == 0 or _MIN_CODEBOOK <= v <= _MAX_CODEBOOK)
            ):
                raise ValueError(
                    f"every entry must be 0 (no codebook) or a size in "
                    f"{_MIN_CODEBOOK}..{_MAX_CODEBOOK}, got {v!r}"
                )
        return _distinct_sorted(values)

    @field_validator("activation_bits", mode="before")
    @classmethod
    def _valid_activation_bits(cls, value: Any) -> tuple[int, ...] | None:
        if value is False or value is None:
            return None
        if value is True:
            value = (4, 8, 32)
        values = _as_list(value)
        for v in values:
            if isinstance(v, bool) or v not in ACTIVATION_BITS:
                raise ValueError(f"every entry must be in 2..8 or 32 (float), got {v!r}")
        return _distinct_sorted(values)

    @field_validator("norm_dtype", mode="before")
    @classmethod
    def _valid_norm_dtype(cls, value: Any) -> tuple[str, ...]:
        if value is False or value is None:
            return ("float32",)
        values = _as_list(value)
        for v in values:
            if v not in NORM_DTYPES:
                raise ValueError(f"every entry must be one of {list(NORM_DTYPES)}, got {v!r}")
        return _distinct_sorted(values)

    # ------------------------------------------------------------------ derived views

    @property
    def weight_bits(self) -> tuple[int | str, ...]:
        """The ``bits`` values searched (``(32,)``, float32 only, when ``bits`` is off)."""
        return self.bits if self.bits is not None else (32,)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """The codebook sizes searched (``(0,)``, no codebook, when ``codebook`` is off)."""
        return self.codebook if self.codebook is not None else (0,)

    @property
    def rank_ratios(self) -> tuple[float, ...]:
        """The rank ratios searched (``(0.0,)``, no factorisation, when ``lowrank`` is off)."""
        return self.lowrank.ratios if self.lowrank is not None else (0.0,)

    @property
    def activation_bit_widths(self) -> tuple[int, ...]:
        """The activation bits searched (``(32,)``, float, when ``activation_bits`` is off)."""
        return self.activation_bits if self.activation_bits is not None else (32,)


def parse_space_config(data: Mapping[str, Any] | bool | None, where: str = "space") -> SpaceConfig:
    """Validate the YAML ``space:`` section, raising one clear line on a problem.

    Args:
        data: The parsed YAML value (a mapping; ``None`` / missing means all defaults).
        where: Key path used in messages.

    Raises:
        ConfigError: naming the offending key, e.g. ``space.prune.min_keep: ...``.
    """
    if data is None:
        return SpaceConfig()
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"`{where}` must be a mapping of families (prune, ofa, bits, codebook, lowrank, "
            f"activation_bits, norm_dtype), got {type(data).__name__}"
        )
    try:
        return SpaceConfig.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(_one_line(error, where)) from None


def _one_line(error: ValidationError, where: str) -> str:
    first = error.errors()[0]
    # Union members (e.g. `PruneSpace` inside `PruneSpace | None`) add their class name
    # to the location; drop those parts so the path is the YAML key path.
    parts = [str(p) for p in first["loc"] if not (isinstance(p, str) and p[:1].isupper())]
    key = ".".join([where, *parts])
    if first["type"] == "extra_forbidden":
        return f"unknown key `{key}`; remove it or fix its spelling"
    message = first["msg"].removeprefix("Value error, ")
    return f"`{key}`: {message}"
