"""Public folder helpers of the data layer, for the layers above it (spotting reads long-video trees with them):
the subfolders of a folder, the first file matching a pattern, the numbered frame images of a folder."""

from __future__ import annotations

from microexp.data._common import find_file, numbered_frames, subdirs

__all__ = ["find_file", "numbered_frames", "subdirs"]
