"""Architecture configs, kept free of torch so metadata readers can use them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, TypeVar

from ingan.errors import ConfigError

T = TypeVar("T")


def _from_dict(cls: type[T], data: Mapping[str, Any], what: str) -> T:
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{what} has unknown fields {sorted(unknown)}; it was written by a newer ingan")
    return cls(**dict(data))


@dataclass(frozen=True)
class GeneratorConfig:
    """InGAN generator shape. Defaults are the paper's (4,804,611 parameters)."""

    base_channels: int = 64
    n_blocks: int = 6
    n_downsampling: int = 3
    spectral_norm: bool = True

    def __post_init__(self) -> None:
        # Checked strictly: the values come from checkpoint files, and an absurd width would
        # try to allocate terabytes before any weight is compared.
        ints = (self.base_channels, self.n_blocks, self.n_downsampling)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints) or not isinstance(
                self.spectral_norm, bool):
            raise ConfigError(f"invalid generator shape {self}: the sizes must be integers, spectral_norm a bool")
        if not 1 <= self.base_channels <= 1024 or not 0 <= self.n_blocks <= 64 or not 1 <= self.n_downsampling <= 6:
            raise ConfigError(
                f"invalid generator shape {self}: need 1 <= base_channels <= 1024, 0 <= n_blocks <= 64, "
                "1 <= n_downsampling <= 6"
            )

    @property
    def size_multiple(self) -> int:
        """The network works internally on sizes that are multiples of this."""
        return 2**self.n_downsampling

    @property
    def min_size(self) -> int:
        """Smallest output side: the 3x3 reflect-padded convs at the bottleneck need >= 2 px."""
        return 2 ** (self.n_downsampling + 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GeneratorConfig":
        return _from_dict(cls, data, "generator config")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Multi-scale patch discriminator. Defaults are the paper's."""

    base_channels: int = 64
    scale_factor: float = 1.4
    # Real crops are shrunk until their short side would drop below this (original: 16).
    min_real_size: int = 16
    # Per-call scale count is limited by the input's short side over this (original: 13).
    min_input_size: int = 13
    max_scales: int = 99

    def __post_init__(self) -> None:
        if self.base_channels < 1 or self.scale_factor <= 1.0 or self.min_input_size < 7:
            raise ConfigError(
                f"invalid discriminator shape {self}: need base_channels >= 1, scale_factor > 1, "
                "min_input_size >= 7"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DiscriminatorConfig":
        return _from_dict(cls, data, "discriminator config")
