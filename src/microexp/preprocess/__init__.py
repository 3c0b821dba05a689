"""Face preprocessing: selection, temporal normalisation, crops, normalisation (cached)."""

from microexp.preprocess.config import PreprocessConfig, StreamConfig
from microexp.preprocess.pipeline import Prepared, preprocess_clip, preprocess_set

__all__ = ["PreprocessConfig", "Prepared", "StreamConfig", "preprocess_clip", "preprocess_set"]
