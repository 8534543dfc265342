from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "apps.api"
    label = "api"
    verbose_name = "API"

    def ready(self) -> None:
        # Registers the OpenAPI extensions with drf-spectacular.
        from apps.api import schema  # noqa: F401
        from apps.api.serializers import operation_payload
        from apps.operations.services.webhooks import register_operation_renderer

        # A webhook event's data is the operation exactly as the API shows it.
        register_operation_renderer(operation_payload)
