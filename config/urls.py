"""Root URL configuration: the API under /api/v1/, its schema and docs, the admin, and the web page at /."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.api.exceptions import unknown_endpoint
from apps.api.views import metrics

urlpatterns = [
    path("api/v1/", include("apps.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # Anything else under /api/ (a mistyped version, say) is the API's 404, not an HTML page.
    re_path(r"^api/", unknown_endpoint),
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("", include("apps.web.urls")),
]

# Errors raised outside a DRF view: the error envelope under /api/, Django's pages elsewhere.
handler400 = "apps.api.exceptions.bad_request"
handler404 = "apps.api.exceptions.not_found"
handler500 = "apps.api.exceptions.server_error"
