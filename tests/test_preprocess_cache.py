"""The preprocessing cache: a second run does no detection work, corrupt entries are rebuilt, keys follow the
frames and the config; parallel and serial runs agree."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from microexp.bench.preprocess import cropped_face
from microexp.data.records import ClipRecord, ClipSet
from microexp.preprocess import face as face_mod
from microexp.preprocess.cache import MAGIC, ClipCache
from microexp.preprocess.config import PreprocessConfig, StreamConfig
from microexp.preprocess.pipeline import preprocess_set

CFG = PreprocessConfig(streams=(StreamConfig("clip", "face", (32, 32)), StreamConfig("eyes", "eyes", (16, 16))),
                       frames=4, face="dlib", align="onset")


class CountingBackend:
    """The real dlib backend, counting detector calls."""

    name = "dlib"

    def __init__(self) -> None:
        self.inner = face_mod.DlibBackend()
        self.calls = 0

    def detect(self, gray):
        self.calls += 1
        return self.inner.detect(gray)

    def landmarks(self, gray, box):
        return self.inner.landmarks(gray, box)


@pytest.fixture
def counting(monkeypatch) -> CountingBackend:
    backend = CountingBackend()
    monkeypatch.setitem(face_mod._BACKENDS, "dlib", backend)
    return backend


def _clipset(root: Path, n_faces: int = 3, blank: bool = False) -> ClipSet:
    records = []
    for c in range(n_faces + int(blank)):
        folder = root / f"clip{c}"
        folder.mkdir(parents=True)
        name = ("astronaut", "grace_hopper")[c % 2]
        paths = []
        for k in range(5):
            img = cropped_face(name, (140, 120)) if c < n_faces else np.full((140, 120, 3), 90, np.uint8)
            img = np.roll(img, k + c, axis=1)
            p = folder / f"img{k + 1}.png"
            cv2.imwrite(str(p), img)
            paths.append(p)
        records.append(ClipRecord("t", "s1", f"clip{c}", "happiness", tuple(paths), tuple(range(1, 6)), 1, 3, 5))
    return ClipSet("t", records, ("happiness",))


def test_second_run_does_no_detection_and_truncated_entry_is_rebuilt(tmp_path, counting):
    clips = _clipset(tmp_path / "data", blank=True)
    cache = ClipCache(tmp_path / "cache")
    first = preprocess_set(clips, CFG, progress=False, cache=cache, workers=1)
    assert counting.calls == 4  # one detection per clip (onset frame only), the blank one included
    assert first.index.tolist() == [0, 1, 2] and first.streams["clip"].shape == (3, 1, 4, 32, 32)
    assert [e.clip for e in first.excluded] == ["t/s1/clip3"] and "no face" in first.excluded[0].reason

    counting.calls = 0
    second = preprocess_set(clips, CFG, progress=False, cache=cache, workers=1)
    assert counting.calls == 0  # everything, the exclusion too, came from the cache
    assert second.index.tolist() == [0, 1, 2] and second.excluded == first.excluded
    for name in ("clip", "eyes"):
        np.testing.assert_array_equal(second.streams[name], first.streams[name])

    files = sorted((tmp_path / "cache").rglob("*.mxc"))
    assert len(files) == 4
    victim = files[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # a partial write
    third = preprocess_set(clips, CFG, progress=False, cache=cache, workers=1)
    assert counting.calls == 1 and cache.rebuilt == 1
    for name in ("clip", "eyes"):
        np.testing.assert_array_equal(third.streams[name], first.streams[name])
    assert victim.read_bytes() == data  # rebuilt identically

    # a flipped payload byte of the same length fails the checksum
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    victim.write_bytes(bytes(flipped))
    counting.calls = 0
    preprocess_set(clips, CFG, progress=False, cache=cache, workers=1)
    assert counting.calls == 1 and cache.rebuilt == 2
    assert not list((tmp_path / "cache").rglob(".tmp-*"))  # atomic writes leave no temporaries


def test_cache_key_follows_frames_and_config(tmp_path, counting):
    clips = _clipset(tmp_path / "data", n_faces=2)
    cache = tmp_path / "cache"
    preprocess_set(clips, CFG, progress=False, cache=cache, workers=1)
    counting.calls = 0
    frame = clips.records[1].frames[0]
    st = os.stat(frame)
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a rewritten frame
    preprocess_set(clips, CFG, progress=False, cache=cache, workers=1)
    assert counting.calls == 1
    counting.calls = 0
    preprocess_set(clips, CFG.with_overrides(frames=3), progress=False, cache=cache, workers=1)
    assert counting.calls == 2  # another config: new entries
    assert ClipCache(cache).get("0" * 64) is None


def test_entry_format(tmp_path):
    cache = ClipCache(tmp_path)
    key = "ab" + "0" * 62
    cache.put(key, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)})
    raw = cache.path(key).read_bytes()
    assert raw.startswith(MAGIC) and int.from_bytes(raw[6:14], "little") == len(raw) - 46
    np.testing.assert_array_equal(cache.get(key)["x"], np.arange(6).reshape(2, 3))
    cache.put(key, "preprocessing failed: no face detected")
    assert cache.get(key) == "preprocessing failed: no face detected"


def test_parallel_equals_serial_and_resumes(tmp_path):
    clips = _clipset(tmp_path / "data", n_faces=4)
    serial = preprocess_set(clips, CFG, progress=False, workers=1)
    cache = ClipCache(tmp_path / "cache")
    # a resumed run: two clips were done before an interruption
    preprocess_set(clips.subset([0, 2]), CFG, progress=False, cache=cache, workers=1)
    seen: list[tuple[int, str]] = []
    parallel = preprocess_set(clips, CFG, progress=False, cache=cache, workers=2,
                              on_result=lambda i, what: seen.append((i, what)))
    assert sorted(seen) == [(0, "cached"), (1, "computed"), (2, "cached"), (3, "computed")]
    assert parallel.index.tolist() == serial.index.tolist()
    for name in ("clip", "eyes"):
        np.testing.assert_array_equal(parallel.streams[name], serial.streams[name])
