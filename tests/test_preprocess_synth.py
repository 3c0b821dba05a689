"""Known motion from the generator (``microexp.synth``): its ``flow`` ground truth against extracted onset->apex
flow, and its per-frame head-jitter similarities against the alignment."""

from __future__ import annotations

import numpy as np
import pytest

from microexp.preprocess import align as al
from microexp.preprocess.config import PreprocessConfig
from microexp.preprocess.flow import compute_flow
from microexp.preprocess.pipeline import clip_geometry
from microexp.synth import load_faces, render_clip


@pytest.fixture(scope="module")
def faces():
    return load_faces(2)  # astronaut, grace_hopper


@pytest.mark.parametrize("method", ["tvl1", "farneback", "dis"])
def test_flow_matches_synth_ground_truth_inside_the_face(faces, method):
    """AU12 at 112x112, no nuisances. Measured (astronaut / grace): mean end-point error inside the face mask
    TV-L1 0.10 / 0.06, Farneback 0.09 / 0.08, DIS 0.10 / 0.09 px; on the moving pixels (|flow| > 0.2 px, true
    motion 0.64-0.73 px on average) 0.13-0.28 px."""
    for face in faces:
        clip = render_clip(face, "AU12", n_frames=12, onset=2, apex=6, offset=10, fps=30, size=(112, 112),
                           jitter=0, flicker=0, noise=0, blink=False)
        truth = clip.flow[clip.apex - 1]
        flow = compute_flow(clip.frames[clip.onset - 1], clip.frames[clip.apex - 1], method)
        epe = np.hypot(*(flow - truth).transpose(2, 0, 1))
        inside = clip.face_mask > 0.5
        moving = np.hypot(truth[..., 0], truth[..., 1]) > 0.2
        assert moving.sum() > 2000
        assert epe[inside].mean() < 0.15
        assert epe[moving].mean() < 0.5 * np.hypot(truth[moving, 0], truth[moving, 1]).mean()


def _residual(transforms: dict[int, np.ndarray], jit: list[np.ndarray], pts: np.ndarray, ref: np.ndarray) -> float:
    """Largest landmark displacement between aligned frame t and the aligned reference frame."""
    return max(float(np.linalg.norm(al.apply(transforms[t], al.apply(jit[t], pts)) - ref, axis=1).max())
               for t in range(1, len(jit)))


@pytest.mark.parametrize("jitter", [0.15, 1.0])
def test_tracking_alignment_removes_synth_head_jitter(faces, jitter):
    """20 frames with the generator's head random walk plus AU12, flicker, noise and a blink. Max residual over
    the 68 landmarks: injected 0.95-6.7 px; ``track`` 0.35-0.42 px (measured). Per-frame dlib landmarks on these
    160 px faces wander by 1.6-3.9 px, more than the default jitter, so ``track`` is the mode to use."""
    for face in faces:
        clip = render_clip(face, "AU12", n_frames=20, onset=5, apex=10, offset=16, fps=30, size=(160, 160),
                           jitter=jitter, seed=3)
        frames = dict(enumerate(clip.frames))
        jit = [m.astype(np.float64) for m in clip.jitter]  # neutral -> frame t
        geo = clip_geometry(frames, 0, PreprocessConfig(face="dlib", align="track"))
        pts = al.apply(al.invert(jit[0]), geo.face.landmarks)  # the landmarks on the neutral face
        ref = al.apply(geo.transforms[0], al.apply(jit[0], pts))

        assert _residual(geo.transforms, jit, pts, ref) < 0.6
        injected = _residual(dict.fromkeys(frames, geo.transforms[0]), jit, pts, ref)
        assert injected > (0.8 if jitter < 0.5 else 5.0)
