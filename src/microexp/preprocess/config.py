"""Typed preprocessing configuration. One config object drives training and inference alike.

A config produces one or more named *streams* (``clip``, ``eyes``, ``mouth``, ``flow``, ...), each a float32
array shaped (C, T, H, W). Models declare which streams they read (see :mod:`microexp.models.registry`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from microexp.contract.values import coerce_fields
from microexp.errors import ConfigError

SELECTIONS = ("whole", "onset_offset", "onset_apex", "keyframes", "keyframes9")
TEMPORAL = ("uniform", "first", "window", "tim", "interpolate_pad", "none")
NORMALISE = ("zscore", "global", "minus1to1", "scale127", "imagenet", "none")
FACE = ("none", "dlib")
ALIGN = ("none", "onset", "per-frame", "track")
GRAY = ("correct", "code")
REGIONS = ("face", "whole", "eyes", "mouth", "roi1", "roi2", "roi3", "roi4", "roi5", "roi6", "face_areas")
KINDS = ("raw", "saliency", "flow", "flowstrain")
FLOW = ("tvl1", "farneback", "dis")
FLOW_PAIRS = ("onset_apex", "consecutive")
SALIENCY = ("signed", "positive")
ON_NO_FACE = ("exclude", "frame")
RESIZE = ("area", "linear", "nearest")
COLOR = ("gray", "rgb")
STRAIN_AT = ("stream", "full")


@dataclass(frozen=True)
class StreamConfig:
    """One model input stream. ``region``: face | whole | eyes | mouth | roi1..roi6 | face_areas (HTNet: the face
    with its four areas, left eye / left lip / right eye / right lip, tiled 2x2; ``extra: {face_areas: code}`` the
    code's transposed crop); ``kind``: raw (C=1; 3 with
    ``preprocess.color: rgb``) | saliency (same) | flow (C=2: u, v) | flowstrain (C=3: u, v, strain)."""

    name: str = "clip"
    region: str = "face"
    size: tuple[int, int] = (64, 64)  # (rows, cols)
    kind: str = "raw"

    def __post_init__(self) -> None:
        coerce_fields(self, f"preprocess.streams[{self.name}].")
        if self.region not in REGIONS:
            raise ConfigError(f"stream {self.name!r}: region={self.region!r} is not one of {list(REGIONS)}")
        if self.kind not in KINDS:
            raise ConfigError(f"stream {self.name!r}: kind={self.kind!r} is not one of {list(KINDS)}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ConfigError(f"stream {self.name!r}: size={self.size!r} must be (rows, cols), both positive")

    @property
    def channels(self) -> int:
        """Channels in gray mode; :meth:`PreprocessConfig.stream_shape` gives the channels under ``color``."""
        return {"raw": 1, "saliency": 1, "flow": 2, "flowstrain": 3}[self.kind]

    @property
    def is_image(self) -> bool:
        """Raw or saliency frames (as opposed to flow fields, which are always computed on gray)."""
        return self.kind in ("raw", "saliency")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a clip record becomes model input.

    selection: which frames of the record are used (``whole`` folder, ``onset_offset``, ``onset_apex``,
    ``keyframes`` = onset/apex/offset, ``keyframes9`` = Joshi's 9 key frames, docs/models.md §2.2).
    temporal / frames: how the selected frames become exactly ``frames`` frames (``uniform`` nearest-frame
    resampling, ``first`` N in true order, a fixed ``window`` (start, stop) of positions: positions start..stop-1,
    ``tim`` temporal interpolation model, ``interpolate_pad`` motion-compensated frame interpolation up to
    ``frames`` as the Microfacial-exp seed, ``none``).
    pad_to: zero frames appended after the last frame (after normalisation) up to ``pad_to`` frames (the
    two-stream seed pads to 152); with ``interpolate_pad`` or ``none`` only; a longer clip is excluded.
    face: ``dlib`` (HOG detector + 68 landmarks) or ``none`` (frames are already face crops).
    align: ``none`` (axis-aligned crops from the reference frame's landmarks, as the seed code), ``onset``
    (similarity alignment on the eye centres of the onset frame, applied to the whole clip), ``per-frame``
    (every frame's own face and landmarks: axis-aligned crops at each frame's own landmark boxes, as the
    FuseNet seed detects per frame), ``track`` (onset landmarks + per-frame rigid registration to the onset
    frame).
    normalise: ``zscore`` per clip, ``minus1to1`` per clip, ``scale127`` (fixed x/127.5 - 1 on 0-255 values, the
    Aouayeb seed), ``imagenet`` (x/255, then torchvision's ImageNet mean / std per R, G, B channel: MMNet),
    ``global`` (the seed code's dataset-wide mean subtract / max divide: fitted on the training
    fold only, see :class:`~microexp.preprocess.normalise.GlobalNormaliser`), or ``none``.
    color: ``gray`` (C=1) or ``rgb``: raw and saliency streams carry the three colour channels in R, G, B order
    (C=3); faces, landmarks and flow always use gray.
    gray: ``correct`` channel order, or ``code`` (the seed's BGR2GRAY on RGB frames, docs/models.md §1.3).
    flow / flow_pairs / flow_size: optical-flow method, onset->apex (T=1) or every consecutive pair of the
    temporally normalised frames (T=frames-1), and the square size the flow is computed at before resizing.
    saliency: ``signed`` frame minus temporal median, or ``positive`` (the seed's uint8 saturation).
    strain_at: optical strain of ``flowstrain`` streams computed on the flow at the stream size (``stream``) or
    on the flow at ``flow_size`` before it is resized (``full``, STSTNet), then resized.
    on_no_face: ``exclude`` the clip, or use the whole ``frame`` as the face box (tightly cropped datasets).
    resize: interpolation of the final resize to the stream size: ``area`` (cv2 INTER_AREA, the MicroExpSTCNN
    seed), ``linear`` (cv2 default, Microfacial-exp), ``nearest`` (PIL/Keras nearest, Joshi's ``load_img``).
    """

    streams: tuple[StreamConfig, ...] = (StreamConfig(),)
    frames: int = 96
    selection: str = "onset_offset"
    temporal: str = "uniform"
    window: tuple[int, int] | None = None
    face: str = "none"
    align: str = "none"
    normalise: str = "zscore"
    gray: str = "correct"  # "code": the seed's BGR/RGB swap (docs/models.md §1.3)
    flow: str = "tvl1"
    flow_pairs: str = "onset_apex"
    flow_size: int = 112
    saliency: str = "signed"
    on_no_face: str = "exclude"
    resize: str = "area"
    color: str = "gray"
    pad_to: int | None = None
    strain_at: str = "stream"
    extra: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        coerce_fields(self, "preprocess.")
        for name, allowed in (("selection", SELECTIONS), ("temporal", TEMPORAL), ("normalise", NORMALISE),
                              ("face", FACE), ("align", ALIGN), ("gray", GRAY), ("flow", FLOW),
                              ("flow_pairs", FLOW_PAIRS), ("saliency", SALIENCY), ("on_no_face", ON_NO_FACE),
                              ("resize", RESIZE), ("color", COLOR), ("strain_at", STRAIN_AT)):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"preprocess.{name}={value!r} is not one of {list(allowed)}")
        if self.frames < 1:
            raise ConfigError(f"preprocess.frames={self.frames} must be positive")
        if not self.streams:
            raise ConfigError("preprocess.streams is empty")
        names = [s.name for s in self.streams]
        if len(set(names)) != len(names):
            raise ConfigError(f"preprocess.streams has duplicate names {names}")
        if self.face == "none" and self.align != "none":
            raise ConfigError(f"preprocess.align={self.align!r} needs face landmarks (preprocess.face='dlib')")
        if self.temporal == "window" and self.window is None:
            raise ConfigError("preprocess.temporal='window' needs preprocess.window=[start, stop]")
        if self.window is not None and not (0 <= self.window[0] < self.window[1]):
            raise ConfigError(f"preprocess.window={list(self.window)} must be [start, stop] with 0 <= start < stop")
        if self.flow_size < 8:
            raise ConfigError(f"preprocess.flow_size={self.flow_size} is too small (>= 8)")
        if self.pad_to is not None:
            if self.temporal not in ("interpolate_pad", "none"):
                raise ConfigError(f"preprocess.pad_to={self.pad_to} needs preprocess.temporal 'interpolate_pad' or "
                                  f"'none' (got {self.temporal!r})")
            if self.pad_to < self.frames:
                raise ConfigError(f"preprocess.pad_to={self.pad_to} is less than preprocess.frames={self.frames}")
        elif self.temporal == "interpolate_pad":
            raise ConfigError("preprocess.temporal='interpolate_pad' needs preprocess.pad_to (e.g. 152)")
        if self.temporal == "interpolate_pad" and self.frames < 2:
            raise ConfigError(f"preprocess.temporal='interpolate_pad' needs frames >= 2, got {self.frames}")

    def stream(self, name: str) -> StreamConfig:
        for s in self.streams:
            if s.name == name:
                return s
        raise ConfigError(f"preprocessing has no stream {name!r} (streams: {[s.name for s in self.streams]})")

    def stream_shape(self, name: str) -> tuple[int, int, int, int]:
        """(C, T, H, W) of one stream: flow streams have T=1 (onset->apex) or frames-1 (consecutive pairs)."""
        s = self.stream(name)
        frames = self.frames if self.pad_to is None else self.pad_to
        if s.kind in ("flow", "flowstrain"):
            t = 1 if self.flow_pairs == "onset_apex" else max(frames - 1, 1)
        else:
            t = frames
        c = 3 if s.is_image and self.color == "rgb" else s.channels
        return (c, t, *s.size)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["streams"] = [dict(s, size=list(s["size"])) for s in d["streams"]]
        d["window"] = list(self.window) if self.window else None
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"a preprocessing config must be a mapping, got {type(d).__name__}")
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown preprocess option(s) {unknown} (known: {sorted(known)})")
        if "streams" in d:
            streams = []
            for s in d["streams"]:
                if not isinstance(s, dict):
                    raise ConfigError(f"preprocess.streams entries must be mappings, got {s!r}")
                bad = sorted(set(s) - {"name", "region", "size", "kind"})
                if bad:
                    raise ConfigError(f"unknown stream option(s) {bad}")
                size = s.get("size", (64, 64))
                size = (size, size) if isinstance(size, int | str) else size  # one number: a square
                streams.append(StreamConfig(**{**s, "size": size}))
            d["streams"] = tuple(streams)
        if "extra" in d:
            d["extra"] = tuple(sorted(dict(d["extra"] or {}).items()))
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"bad preprocessing config: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, base: PreprocessConfig | None = None) -> PreprocessConfig:
        """Load from a YAML file: either the mapping itself or a mapping with a ``preprocess:`` key. With ``base``
        (e.g. a model's default preprocessing) the file's keys override it."""
        import yaml

        from microexp.contract.values import load_yaml

        path = Path(path)
        try:
            data = load_yaml(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: preprocessing config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if isinstance(data, dict) and "preprocess" in data:
            data = data["preprocess"]
        if base is not None:
            if data is None:
                return base
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: a preprocessing config must be a mapping")
            data = {**base.to_dict(), **data}
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_yaml(self, path: str | Path | None = None) -> str:
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def with_overrides(self, **overrides: Any) -> PreprocessConfig:
        return replace(self, **overrides)
