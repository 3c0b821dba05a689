"""The demo: the main job on the embedded default.

Render a synthetic micro-expression set from real faces (:mod:`microexp.synth`), then train and score a small-input
MicroExpSTCNN under subject-grouped k-fold, with the shuffled-label control beside it.

The STCNN reads the *saliency* stream (each frame minus the per-pixel temporal median, the Microfacial-exp second
stream): it removes the static face, so the subtle AU motion is what is left to learn beside the nuisances. It is
trained with Adam (lr 1e-3) because the reference optimiser (SGD lr 0.01, no momentum) does not move off chance on
this data in the few epochs a two-minute demo allows. Both choices are stated in the printed table and saved in the
run's config.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from microexp.config import RunConfig, TrainConfig
from microexp.errors import ConfigError

if TYPE_CHECKING:
    from microexp.train.evaluate import RunResult

FRAMES = 20  # >= 17 so the 15-frame kernel leaves something to pool
SIZE = 32


@dataclass
class DemoSettings:
    subjects: int = 16
    clips_per_class: int = 4
    protocol: str = "kfold"
    folds: int = 4
    epochs: int = 12
    lr: float = 1e-3
    optimizer: str = "adam"
    seed: int = 0
    control: bool = True
    precision: str = "fp32"  # train.precision (fp32 | bf16)


def demo_config(data: Path, s: DemoSettings) -> RunConfig:
    return RunConfig(
        dataset="synthetic", root=str(data), model="stcnn", protocol=s.protocol, folds=s.folds, seeds=[s.seed],
        control="shuffle" if s.control else "none",
        preprocess={"frames": FRAMES, "selection": "whole", "normalise": "zscore",
                    "streams": [{"name": "clip", "region": "face", "size": [SIZE, SIZE], "kind": "saliency"}]},
        train=TrainConfig(epochs=s.epochs, batch_size=8, optimizer=s.optimizer, lr=s.lr, precision=s.precision),
    )


def run_demo(out: Path, settings: DemoSettings | None = None, progress: bool = True,
             log: Callable[[str], None] = print) -> RunResult:
    """Write the synthetic set to ``out/data`` and the run to ``out/run``."""
    from microexp.synth import SynthConfig, generate, write_plain
    from microexp.train.evaluate import evaluate

    s = settings or DemoSettings()
    data = out / "data"
    config = demo_config(data, s)  # every setting checked before anything is rendered
    for name, value in (("subjects", s.subjects), ("clips_per_class", s.clips_per_class)):
        if value < 1:
            raise ConfigError(f"{name}={value} must be at least 1")
    if s.protocol == "kfold" and s.subjects < s.folds:
        raise ConfigError(f"folds={s.folds} needs at least as many subjects (subjects={s.subjects})")
    log(f"1/2 rendering {s.subjects} synthetic subjects x 3 classes x {s.clips_per_class} clips (real "
        f"public-domain and LFW faces from installed packages) into {data}")
    write_plain(generate(SynthConfig(n_subjects=s.subjects, clips_per_class=s.clips_per_class, seed=s.seed)), data)
    log(f"2/2 MicroExpSTCNN on the saliency stream ({SIZE}x{SIZE}x{FRAMES}), {s.protocol} over subjects, "
        f"{s.epochs} epochs {s.optimizer} lr {s.lr:g}" + (", then the shuffled-label control" if s.control else ""))
    return evaluate(config, out=out / "run", progress=progress, log=lambda _m: None)
