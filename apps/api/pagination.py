"""Page-number pagination in the success envelope: ``?page=``, ``?page_size=`` (at most 100)."""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.exceptions import ValidationFailed


class EnvelopePagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        # A page or page size that is not a whole number from 1 is a bad request (400); a page past
        # the end stays DRF's 404, and a page size over the maximum is cut to it.
        for name in (self.page_query_param, self.page_size_query_param):
            value = request.query_params.get(name)
            if value is None or (name == self.page_query_param and value in self.last_page_strings):
                continue
            if not (value.isascii() and value.isdigit() and int(value) > 0):
                raise ValidationFailed(
                    f"The {name.replace('_', ' ')} is not valid.", details={name: ["Must be a whole number from 1."]}
                )
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"] = {**parameter["schema"], "minimum": 1}
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = f"Results per page, at most {self.max_page_size} (larger is cut to it)."
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
