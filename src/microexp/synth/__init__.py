"""Synthetic micro-expressions rendered from real faces (``microexp.synth``).

What it makes: short grayscale clips (default 24 frames at 30 fps, 64x64) of a real face in which the class is
expressed *only* by a subtle, local, action-unit-like motion: positive = AU12 (+AU6), negative = AU4 / AU4+7 /
AU14 / AU15 (+17), surprise = AU1+AU2 (see ``generate.CLASS_AUS``). The AU motion is a thin-plate-spline warp
of the neutral face (docs/synthetic.md §7), fitted once per face/AU set on landmark controls, pinned
landmarks and a dense outer zero-anchor grid, and masked to the face. Its timing follows CASME II: onset->apex
and apex->offset drawn log-normally around 150 ms (IQRs 115-208 / 106-210 ms) at the configured fps,
raised-cosine rise and fall, onset at 20-35 % of the clip so the event sits inside neutral padding. Default
intensity 2.0 (apex displacement about 0.1 IOD, ~2 px at 64x64) was calibrated so a linear model on apex-onset
differences scores ~0.75 and MicroExpSTCNN ~0.65 under subject-grouped 4-fold CV (3 classes; shuffled labels
~0.33).

Nuisances are in every class, at least as large as the signal: a smooth random-walk similarity head jitter
(0.15 px/frame plus a slow sway, about the nasion), aliased mains flicker (1.5 %) with slow global and
gradient illumination drift, Gaussian read + shot noise (sigma 2 grey levels), and one partial blink (30-50 %
lid closure) per clip. Every frame of every clip (no-AU clips included) goes through the same remap.

Ground truth: each :class:`SynthClip` carries subject, label, 1-based onset/apex/offset, fps, the AU string,
the intensity, ``flow`` (AU displacement relative to the neutral face per frame, float32 (T, H, W, 2), jitter
and blink excluded), ``envelope``, ``blink`` and the per-frame ``jitter`` similarity.

Provenance: base faces are loaded at run time from installed packages and never stored in the project:
``skimage.data.astronaut()`` and matplotlib's ``grace_hopper.jpg`` (public-domain portraits), then the first
100 face crops of ``skimage.data.lfw_subset()``. 68-point landmarks come from dlib (predictor file inside the
installed ``face_recognition_models`` package); LFW crops where dlib finds no face even after a 4x upscale get
the mean LFW landmark template (``Face.source`` ends in ``(template)``). Landmarks are cached in-process only.
``write_plain`` writes PNG frames of the *rendered* clips where the user asks, never the source images.

Deterministic: the same :class:`SynthConfig` gives identical bytes; each clip is seeded by (seed, subject,
class, index).

:mod:`microexp.synth.fixtures` writes trees in the exact layout of the real releases (``microexp synth --layout
casme2`` ...), one writer per dataset name, rendered by this generator; it is imported on its own (it reads the
dataset modules of :mod:`microexp.data`, which never import ``synth``).
"""

from microexp.synth.aus import AU, SUPPORTED, format_aus, parse_aus
from microexp.synth.faces import Face, load_faces
from microexp.synth.generate import CLASS_AUS, SynthConfig, generate, sample_timing, write_plain
from microexp.synth.render import SynthClip, envelope, render_clip, unit_field

__all__ = [
    "AU",
    "CLASS_AUS",
    "SUPPORTED",
    "Face",
    "SynthClip",
    "SynthConfig",
    "envelope",
    "format_aus",
    "generate",
    "load_faces",
    "parse_aus",
    "render_clip",
    "sample_timing",
    "unit_field",
    "write_plain",
]
