"""The spotting run's configuration (``microexp evaluate --task spot``), checked when it is built.

The spotting layer's own names (its methods, its feature settings) are checked by the subclass it defines,
:class:`microexp.spot.evaluate.SpotConfig`, so the contract imports no spotting code.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import model_validator

from microexp.contract.faces import check_face
from microexp.contract.values import ConfigModel
from microexp.errors import ConfigError

EXPRESSION_TYPES = ("micro", "macro")
PROTOCOLS = ("loso", "kfold")
CONTROLS = ("none", "shuffle")
BLINK_RULES = ("separate", "spans", "ignore")
LONG_EVENTS = ("chained", "direct")  # the learned macro spotter's inputs and target (spot.methods)
OVERLAPS = ("one-spot", "one-type", "both")  # spots on one movement (spot.detect.one_movement)
MACRO_SCALES = (1, 4)  # the macro spotter's window scales, least and most
THRESHOLDS = {"train": "fitted on the training subjects of each fold (learned: on out-of-fold curves)",
              "in-sample": "fitted on the training subjects of each fold, on the curves of the network trained on "
                           "them (learned spotter: scores its own training videos, so biased; the former rule)",
              "test-peek": "LEAKY: threshold tuned on the test subject (reproduces published numbers only)"}


class SpotRunConfig(ConfigModel):
    """Everything that defines a spotting run; saved (with the data's frame rate) as its ``config.yaml``."""

    # what ``microexp evaluate --task spot --set KEY=VALUE`` may set
    SETTABLE: ClassVar[tuple[str, ...]] = ("fps", "crop", "grid", "face", "seed", "epochs", "recognise",
                                           "threshold", "blinks", "macro_scales", "long_events",
                                           "overlap")

    dataset: str = "samm_lv"
    root: str = ""
    annotation: str | None = None
    method: str = "mdmd"
    protocol: str = "loso"
    folds: int = 5
    control: str = "none"  # none | shuffle
    threshold: str = "train"  # train | in-sample | test-peek (leaky)
    epochs: int = 12
    seed: int = 0
    crop: int = 64
    grid: int = 6
    face: str = "dlib"
    fps: float | None = None  # None: the release's frame rate (SAMM-LV 200, CAS(ME)^2 and CAS(ME)^3 30)
    recognise: str | None = None  # a recognition run: classify every spotted interval, score STRS
    types: tuple[str, ...] = EXPRESSION_TYPES
    # separate: no expression spotted on a blink (spot.blinks) | spans: nor one that covers a blink with no other
    # region moving in it | ignore: the former rule
    blinks: str = "separate"
    macro_scales: int = 2  # window scales of the macro spotter (1: the former single mean-length window)
    # learned macro spotter: chained short flows and the interval's middle as target | direct: the k-frame flows
    # and the apex (the former)
    long_events: str = "chained"
    # one-spot: spots that share frames (a micro and a macro one sharing half, or two of one type) are one
    # movement, the stronger one is kept | one-type: micro against macro only (the former) | both: none
    overlap: str = "one-spot"

    @model_validator(mode="after")
    def _check(self) -> SpotRunConfig:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"spotting protocol {self.protocol!r}: expected loso or kfold")
        if self.control not in CONTROLS:
            raise ConfigError(f"control {self.control!r}: expected none or shuffle")
        if self.threshold not in THRESHOLDS:
            raise ConfigError(f"threshold {self.threshold!r}: expected {' or '.join(THRESHOLDS)}")
        for t in self.types:
            if t not in EXPRESSION_TYPES:
                raise ConfigError(f"expression type {t!r}: expected micro and/or macro")
        if not MACRO_SCALES[0] <= self.macro_scales <= MACRO_SCALES[1]:
            raise ConfigError(f"macro_scales {self.macro_scales}: expected {MACRO_SCALES[0]} to {MACRO_SCALES[1]}")
        if self.overlap not in OVERLAPS:
            raise ConfigError(f"overlap {self.overlap!r}: expected {' or '.join(OVERLAPS)}")
        if self.long_events not in LONG_EVENTS:
            raise ConfigError(f"long_events {self.long_events!r}: expected {' or '.join(LONG_EVENTS)}")
        if self.blinks not in BLINK_RULES:
            raise ConfigError(f"blinks {self.blinks!r}: expected {' or '.join(BLINK_RULES)}")
        if self.fps is not None and not self.fps > 0:
            raise ConfigError(f"fps {self.fps}: must be positive")
        check_face(self.face)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {**self.model_dump(), "types": list(self.types)}
