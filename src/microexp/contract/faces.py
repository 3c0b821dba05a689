"""The face detector choices of everything that reads video (predict, spot, the web app's jobs): one list, one
check. The tracker that runs them is :class:`microexp.preprocess.track.FaceTracker`."""

from __future__ import annotations

from microexp.errors import ConfigError

# dlib: HOG detector (near-frontal faces); dlib-mmod: HOG, and dlib's CNN (MMOD) detector where HOG and the
# tracking step both lose the face (turned heads); none: the frames are face crops already
FACE_MODES = ("dlib", "dlib-mmod", "none")
FACE_HELP = ("dlib = detect (HOG) and track the face; dlib-mmod = the same, with dlib's CNN detector where HOG and "
             "tracking lose the face (turned heads; slower there); none = the frames are face crops already")


def check_face(face: object, name: str = "face") -> str:
    """``face`` if it is one of :data:`FACE_MODES`; otherwise a one-line :class:`ConfigError` naming ``name``."""
    if not isinstance(face, str) or face not in FACE_MODES:
        raise ConfigError(f"{name} {face!r}: expected one of {', '.join(FACE_MODES)}")
    return face
