"""UploadError: a rejected upload and its HTTP status, shared by ``uploads`` and ``dicom_zip``."""

from __future__ import annotations


class UploadError(ValueError):
    """A rejected upload; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
