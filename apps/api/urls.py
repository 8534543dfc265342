"""Every endpoint under /api/v1/; an unknown path gets a 404 in the error envelope."""

from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from apps.api import uploads, views
from apps.api.exceptions import unknown_endpoint

router = SimpleRouter()
router.register("operations", views.OperationViewSet, basename="operation")

urlpatterns = [
    *router.urls,
    path("operation-definitions/", views.OperationDefinitionListView.as_view(), name="operation-definition-list"),
    path(
        "operation-definitions/<str:name>/",
        views.OperationDefinitionDetailView.as_view(),
        name="operation-definition-detail",
    ),
    path("presets/", views.PresetListView.as_view(), name="preset-list"),
    path("vocabulary/", views.VocabularyView.as_view(), name="vocabulary"),
    path("health/", views.HealthView.as_view(), name="health"),
    path("queues/", views.QueuesView.as_view(), name="queues"),
    path("session/", views.SessionView.as_view(), name="session"),
    path("uploads/", uploads.UploadCollectionView.as_view(), name="upload-list"),
    path("uploads/<str:upload_id>/", uploads.UploadDetailView.as_view(), name="upload-detail"),
    re_path(r"^.*$", unknown_endpoint),
]
