"""Extra loss terms, by name: a new term is one function and one registry line.

A term sees one branch's batch (``TermInputs``) and returns a scalar tensor with gradient.
``--set loss.extra_terms=name:weight,other:weight`` adds ``weight * term`` to every branch's loss
after the method's own terms, and training logs it as ``<branch>/<name>``:

    @register_loss_term("positive_gap")
    def positive_gap(x: TermInputs) -> torch.Tensor:      # 1 - s(q, V+), mean over queries
        return (1 - x.s[torch.arange(len(x.labels)), x.labels]).mean()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from prvr_cli.core.registry import Registry
from prvr_cli.errors import PrvrError


@dataclass
class TermInputs:
    """One branch's batch: sf (Nq, B, L) frame similarities with gradient, s (Nq, B) video
    scores, mask (B, L) valid frames, labels (Nq,) batch position of each query's video, and the
    ambiguous sets the branch was given (None in warm-up and for the baseline)."""

    sf: torch.Tensor
    s: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    given: object | None


LOSS_TERMS: Registry[Callable[[TermInputs], torch.Tensor]] = Registry("term", where="loss.extra_terms")


def register_loss_term(name: str):
    """Decorator: make ``fn(TermInputs) -> scalar`` available as ``loss.extra_terms=name:w``."""
    return LOSS_TERMS.register(name)


def extra_terms(spec: str) -> list[tuple[str, Callable[[TermInputs], torch.Tensor], float]]:
    """``"name:weight,name:weight"`` -> [(name, term, weight)]; an unknown name or a bad weight is
    a one-line error (an unknown name's lists the registered terms)."""
    out = []
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, _, weight = item.partition(":")
        term = LOSS_TERMS[name]
        try:
            out.append((name, term, float(weight or 1.0)))
        except ValueError:
            raise PrvrError(f"loss.extra_terms: weight of {name!r} must be a number, not {weight!r}") from None
    return out
