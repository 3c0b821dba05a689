"""The torch modules of prediction: one checkpoint's model as a probability function of its streams (with the
run's fitted global normalisation folded in), and the mean of several (an exported ensemble). Built lazily so
that ``import microexp.predict`` does not import torch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from microexp.preprocess.normalise import GlobalNormaliser

_MEMBER: type | None = None
_ENSEMBLE: type | None = None


def _build() -> None:
    global _MEMBER, _ENSEMBLE
    import torch

    class Member(torch.nn.Module):
        """One checkpoint's model as a probability function of its streams, positional in stream order,
        with the run's fitted global normalisation (if any) folded in."""

        def __init__(self, model: torch.nn.Module, streams: Sequence[str],
                     normaliser: dict[str, dict[str, float]] | None, vote: bool = False,
                     sigmoid: bool = False) -> None:
            super().__init__()
            self.model = model.eval()
            self.sigmoid = sigmoid  # an AU-detection model: one independent probability per AU
            self.vote = vote  # a frames-vote model: a clip's probabilities are its frames' vote shares
            self.streams = list(streams)
            self.normaliser = GlobalNormaliser.from_dict(normaliser) if normaliser else None

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            kw = {}
            for name, x in zip(self.streams, inputs, strict=True):
                kw[name] = self.normaliser.apply(name, x) if self.normaliser is not None else x
            if self.sigmoid:
                return torch.sigmoid(self.model(**kw).float())
            if not self.vote:
                return torch.softmax(self.model(**kw).float(), dim=1)
            # as microexp.train.vote scores it in evaluation (frame_classes -> vote_shares), in torch for export
            probs = torch.softmax(self.model.frame_logits(**kw).float(), dim=-1)
            k = probs.shape[-1]
            frame = (probs[..., 0] <= 0.5).long() if k == 2 else probs.argmax(dim=-1)
            return torch.nn.functional.one_hot(frame, k).float().mean(dim=1)

    class Ensemble(torch.nn.Module):
        """Mean class probabilities of several members (the ONNX export of an ensemble)."""

        def __init__(self, members: Sequence[torch.nn.Module]) -> None:
            super().__init__()
            self.members = torch.nn.ModuleList(members)

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            out = self.members[0](*inputs)
            for m in self.members[1:]:
                out = out + m(*inputs)
            return out / len(self.members)

    _MEMBER, _ENSEMBLE = Member, Ensemble


def member_class() -> Any:
    if _MEMBER is None:
        _build()
    return _MEMBER


def ensemble_class() -> Any:
    if _ENSEMBLE is None:
        _build()
    return _ENSEMBLE
