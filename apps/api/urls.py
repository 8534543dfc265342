from django.urls import path

from apps.api import views

urlpatterns = [
    path("health/", views.HealthView.as_view(), name="health"),
    path("session/", views.SessionView.as_view(), name="session"),
]
