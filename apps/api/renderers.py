"""The API's JSON renderer: DRF's, which cannot fail on text that is not valid Unicode."""

from __future__ import annotations

from typing import Any

from rest_framework.renderers import JSONRenderer


class SafeJSONRenderer(JSONRenderer):
    """DRF's JSONRenderer writes non-ASCII text as UTF-8, which a lone surrogate (``"\\ud800"``, as
    JSON escapes allow) cannot be encoded in: rendering an error that echoes one would itself
    fail with a 500. Such a body is rendered again with every non-ASCII character escaped, which
    is valid JSON for any string."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return _EscapedJSONRenderer().render(data, accepted_media_type, renderer_context)


class _EscapedJSONRenderer(JSONRenderer):
    ensure_ascii = True
