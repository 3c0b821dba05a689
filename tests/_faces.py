"""Ground truth for the face tests: landmarks of the two real photographs of
:func:`microexp.bench.preprocess.sample_faces` (astronaut, grace_hopper)."""

# Hand-measured (on 3x zoomed views) pupil centres and mouth centre, (x, y) pixels of the original photographs.
FACE_TRUTH = {
    "astronaut": {"left_eye": (203, 102), "right_eye": (247, 103), "mouth": (224, 144)},
    "grace_hopper": {"left_eye": (222, 188), "right_eye": (305, 186), "mouth": (269, 278)},
}
