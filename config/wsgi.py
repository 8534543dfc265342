"""WSGI entry point for gunicorn (see the Procfile)."""

import os
from pathlib import Path

from django.core.wsgi import get_wsgi_application
from dotenv import load_dotenv

# A local .env fills in what the real environment does not set (a PaaS sets real variables).
load_dotenv(Path(__file__).resolve().parent.parent / ".env", override=False)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

application = get_wsgi_application()
