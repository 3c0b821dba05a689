"""The options of ``microexp serve`` (the local web app), checked before anything listens."""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

from microexp.contract.faces import check_face
from microexp.contract.values import ConfigModel
from microexp.errors import ConfigError

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 512.0


class ServeOptions(ConfigModel):
    """``runs``: the folder whose run directories are served; ``host`` / ``port`` (0 picks a free port);
    ``max_upload_mb``: the largest video upload; ``workers``: analyses run at the same time."""

    runs: Path = Path("runs")
    host: str = LOOPBACK
    port: int = DEFAULT_PORT
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    workers: int = 1

    @model_validator(mode="after")
    def _check(self) -> ServeOptions:
        if not self.runs.is_dir():
            raise ConfigError(f"--runs {self.runs}: no such folder (the folder whose run directories to show)")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port}: give 0-65535 (0 picks a free port)")
        if self.max_upload_mb <= 0:
            raise ConfigError(f"--max-upload-mb {self.max_upload_mb:g}: must be positive")
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: must be at least 1")
        return self


class JobOptions(ConfigModel):
    """An analysis job's options (the web app's form): ``window`` / ``stride`` in frames (None: the run's),
    ``face`` the face detector (:data:`~microexp.contract.faces.FACE_MODES`; None: the run's own mode)."""

    window: int | None = None
    stride: int | None = None
    face: str | None = None

    @model_validator(mode="after")
    def _check(self) -> JobOptions:
        for name in ("window", "stride"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} {value}: at least 1 frame")
        if self.face is not None:
            check_face(self.face)
        return self
