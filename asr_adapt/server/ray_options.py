"""What ``asr-adapt serve --ray`` adds to the server's options: where the Ray cluster is and
how many model replicas to run (no ray import: the CLI checks these before loading anything)."""

from __future__ import annotations

from dataclasses import dataclass

from asr_adapt.core.errors import OptionsError


@dataclass(frozen=True)
class RayOptions:
    """The Ray Serve deployment's shape (see docs/serving-ray.md)."""

    #: Model replicas; each loads the base models it is asked for once, and its profiles' adapters.
    replicas: int = 1
    #: The Ray cluster: None joins this machine's if one runs, else starts a local one;
    #: ``auto`` (or ``HOST:6379``) joins a running one, never starting one.
    address: str | None = None
    #: CPUs each model replica reserves (fractions share a core: 0.5 fits two replicas on one).
    replica_cpus: float = 1.0
    #: GPUs each model replica reserves; None: a share of the cluster's GPUs, at most one each.
    replica_gpus: float | None = None
    #: CPUs the ingress (HTTP, uploads, live streams' state) reserves.
    ingress_cpus: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.replicas, int) or isinstance(self.replicas, bool) or self.replicas < 1:
            raise OptionsError(f"replicas must be a positive integer, got {self.replicas!r}")
        if self.address is not None and not self.address.strip():
            raise OptionsError("the Ray address is empty: give 'auto' or HOST:PORT, or leave it out")
        if not self.replica_cpus > 0 or not self.ingress_cpus > 0:
            raise OptionsError(f"CPUs per replica must be positive, got {self.replica_cpus} and {self.ingress_cpus}")
        if self.replica_gpus is not None and not self.replica_gpus >= 0:
            raise OptionsError(f"GPUs per replica must be 0 or more, got {self.replica_gpus}")


def require_ray() -> None:
    """Ray Serve importable, or a one-line OptionsError naming what to install."""
    try:
        import ray.serve  # noqa: F401  (the optional extra; imported only for --ray)
    except ImportError:
        raise OptionsError("--ray needs Ray Serve: pip install 'asr-adapt[ray]'") from None


__all__ = ["RayOptions", "require_ray"]
