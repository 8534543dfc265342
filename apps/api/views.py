"""API views: thin adapters from HTTP to the services."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.health import run_health_checks


class HealthView(APIView):
    @extend_schema(
        responses=inline_serializer(
            "HealthEnvelope",
            {"success": serializers.BooleanField(), "data": serializers.DictField()},
        )
    )
    def get(self, request: Request) -> Response:
        checks = run_health_checks()
        healthy = all(result.ok for result in checks.values())
        data = {
            "status": "healthy" if healthy else "degraded",
            "checks": {name: asdict(result) for name, result in checks.items()},
        }
        return Response({"success": True, "data": data}, status=200 if healthy else 503)


class SessionView(APIView):
    @extend_schema(
        responses=inline_serializer(
            "SessionEnvelope",
            {"success": serializers.BooleanField(), "data": serializers.DictField()},
        )
    )
    def get(self, request: Request) -> Response:
        return Response({"success": True, "data": {"session_key": request.session.session_key}})
