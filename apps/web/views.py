"""The web page: one template; everything it shows comes from the public API, fetched by the browser."""

from __future__ import annotations

from typing import Any

from django.urls import get_script_prefix
from django.views.generic import TemplateView

# The contract's prefix. Joined to the script prefix so that a deployment under a sub-path
# (SCRIPT_NAME) still points the page at its own API.
API_PATH = "api/v1/"
# Files from this size up are sent through tus (resumable) when the server offers it: below it a
# single request is as quick and a lost one costs little to send again.
TUS_THRESHOLD_BYTES = 20 * 1024 * 1024


class IndexView(TemplateView):
    template_name = "web/index.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["api_root"] = get_script_prefix() + API_PATH
        context["tus_threshold"] = TUS_THRESHOLD_BYTES
        return context
