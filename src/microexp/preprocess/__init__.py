"""Face preprocessing: detection + 68 landmarks, alignment, face and region crops, temporal normalisation,
optical flow and strain, normalisation; cached on disk and parallel over clips."""

from microexp.preprocess.cache import ClipCache, default_cache_dir
from microexp.preprocess.config import PreprocessConfig, StreamConfig
from microexp.preprocess.normalise import GlobalNormaliser, normalise_clip
from microexp.preprocess.pipeline import Prepared, preprocess_clip, preprocess_set

__all__ = ["ClipCache", "GlobalNormaliser", "PreprocessConfig", "Prepared", "StreamConfig", "default_cache_dir",
           "normalise_clip", "preprocess_clip", "preprocess_set"]
