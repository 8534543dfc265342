"""Page-number pagination in the success envelope: ``?page=``, ``?page_size=`` (at most 100)."""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.exceptions import ValidationFailed


def _is_positive(value: str) -> bool:
    # isdecimal, not isdigit: "²" is a digit that int() refuses. Bounded length: no 5000-digit int().
    return value.isascii() and value.isdecimal() and len(value) <= 18 and int(value) > 0


class EnvelopePagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        # A page that is not a number is a bad request (400); a number past the end stays DRF's 404.
        page = request.query_params.get(self.page_query_param)
        if page is not None and page not in self.last_page_strings and not _is_positive(page):
            raise ValidationFailed("The page is not valid.", details={"page": ["Must be a whole number from 1."]})
        # DRF would quietly fall back to the default size; a size of 0 or -5 is a mistake worth naming.
        # Sizes over the maximum are capped, as documented.
        page_size = request.query_params.get(self.page_size_query_param or "page_size")
        if page_size is not None and not _is_positive(page_size):
            raise ValidationFailed(
                "The page size is not valid.",
                details={"page_size": [f"Must be a whole number from 1 (at most {self.max_page_size} are given)."]},
            )
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"] = {**parameter["schema"], "minimum": 1}
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = f"Results per page, from 1; more than {self.max_page_size} are capped."
        return parameters

    def get_paginated_response(self, data: list[Any]) -> Response:
        page = self.page
        if page is None:
            raise RuntimeError("get_paginated_response() needs a page: call paginate_queryset() first.")
        return Response(
            {
                "success": True,
                "data": data,
                "pagination": {
                    "count": page.paginator.count,
                    "page": page.number,
                    "page_size": page.paginator.per_page,
                    "total_pages": page.paginator.num_pages,
                    "next": self.get_next_link(),
                    "previous": self.get_previous_link(),
                },
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["success", "data", "pagination"],
            "properties": {
                "success": {"type": "boolean"},
                "data": schema,
                "pagination": {
                    "type": "object",
                    "required": ["count", "page", "page_size", "total_pages", "next", "previous"],
                    "properties": {
                        "count": {"type": "integer", "example": 42},
                        "page": {"type": "integer", "example": 2},
                        "page_size": {"type": "integer", "example": 20},
                        "total_pages": {"type": "integer", "example": 3},
                        # OpenAPI 3.1 (SPECTACULAR_SETTINGS["OAS_VERSION"]): null is a type.
                        "next": {"type": ["string", "null"], "format": "uri"},
                        "previous": {"type": ["string", "null"], "format": "uri"},
                    },
                },
            },
        }
