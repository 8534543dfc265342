"""Receiving uploads without letting a client fill the disk.

The size limit depends on the operation, which arrives inside the multipart body, so it is
enforced in two steps: while receiving, each file is cut off at the largest limit of any
operation that accepts its extension (``.png``: the image limit), and a request whose
Content-Length is larger than any limit is refused before its body is read; after parsing, the
serializer checks the exact limit of the chosen operation. A refused upload's temporary file is
deleted at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, MultiPartParser

from apps.api.validators import file_too_large, largest_upload_limit, upload_limit_for

# Room for the form fields and multipart boundaries around the file itself.
MULTIPART_ALLOWANCE = 1024 * 1024


class SizeLimitedUploadHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler, refusing a file as soon as it passes its limit."""

    limit = 0

    # django-stubs type ``boundary`` as str; Django's MultiPartParser passes bytes.
    def handle_raw_input(  # type: ignore[override]
        self, input_data: Any, META: dict[str, Any], content_length: int, boundary: bytes, encoding: str | None = None
    ) -> None:
        largest = largest_upload_limit()
        if content_length > largest + MULTIPART_ALLOWANCE:
            raise file_too_large(largest)

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
        super().new_file(field_name, file_name, *args, **kwargs)
        self.limit = upload_limit_for(file_name)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if start + len(raw_data) > self.limit:
            self.file.close()  # a NamedTemporaryFile: closing it deletes it
            raise file_too_large(self.limit)
        try:
            super().receive_data_chunk(raw_data, start)
        except OSError:
            # A full disk: remove the partial file now (the exception handler answers 503).
            self.file.close()
            raise


class UploadParser(MultiPartParser):
    """multipart/form-data with size-limited upload handlers. Small files stay in memory
    (FILE_UPLOAD_MAX_MEMORY_SIZE); larger ones stream to a temp file under TEMP_ROOT."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        request = (parser_context or {})["request"]
        request.upload_handlers = [MemoryFileUploadHandler(request), SizeLimitedUploadHandler(request)]
        return super().parse(stream, media_type, parser_context)


class JSONBodyParser(JSONParser):
    """DRF's JSON parser, with the inputs that crash Python's decoder refused as a parse error.

    A body nested deeper than the decoder's recursion limit raises RecursionError, and an integer
    past Python's int-to-str digit limit a ValueError that is not a JSONDecodeError: DRF lets both
    through as a 500. Neither can be a request any endpoint takes, so both are a 400."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as e:
            raise ParseError("The JSON body is nested too deeply.") from e
        except ValueError as e:
            raise ParseError(f"The JSON body is not valid: {e}") from e
