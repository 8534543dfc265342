"""Settings shared by every environment; development.py and production.py only override."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.settings.env import (
    env_bool,
    env_int,
    env_int_list,
    env_list,
    env_networks,
    env_rate,
    env_size,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# --- Core -----------------------------------------------------------------------------------
# The development key is only a fallback; production.py refuses to start with it.
INSECURE_SECRET_KEY = "django-insecure-konvrt-development-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY") or INSECURE_SECRET_KEY
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.core",
    "apps.operations",
    "apps.processors",
    "apps.api",
    "apps.web",
    # After Konvrt's apps, whose management commands win: apps.operations' ``rqcron`` is
    # django-rq's with a scheduler that survives a Redis outage.
    "django_rq",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Synchronous only, like the view layer: config/asgi.py runs the whole chain and the view in
    # the request's one thread (docs/deployment.md).
    "apps.core.middleware.ApiSessionMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Storage --------------------------------------------------------------------------------
STORAGE_ROOT = Path(env_str("STORAGE_ROOT") or BASE_DIR / "storage").resolve()
# Per-job working directories and in-flight uploads; may be a separate (faster) disk.
TEMP_ROOT = Path(env_str("TEMP_ROOT") or STORAGE_ROOT / "temp").resolve()
FILE_RETENTION_DAYS = env_int("FILE_RETENTION_DAYS", 7, minimum=1)
MAX_FILE_SIZE = {
    "video": env_size("MAX_FILE_SIZE_VIDEO", 500 * 1024 * 1024),
    "image": env_size("MAX_FILE_SIZE_IMAGE", 25 * 1024 * 1024),
    "audio": env_size("MAX_FILE_SIZE_AUDIO", 100 * 1024 * 1024),
}
# Uploads larger than this are streamed to a temporary file next to the storage root (same
# filesystem, so storing the upload is a rename rather than a copy).
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = str(TEMP_ROOT / "uploads")
FILE_UPLOAD_PERMISSIONS = 0o640
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# WhiteNoise also serves the apps' static files straight from their directories (indexed once at
# start-up), so the web page works with DEBUG off without a collectstatic step: under `make run`,
# the Procfile's gunicorn and the tests alike. Files collected into STATIC_ROOT are served too.
WHITENOISE_USE_FINDERS = True

# --- Cloudinary -----------------------------------------------------------------------------
USE_CLOUDINARY = env_bool("USE_CLOUDINARY", False)
# Where stored files live: local (default; one machine, or a volume every machine mounts),
# cloudinary (also chosen by USE_CLOUDINARY=True) or s3 (AWS S3, MinIO, R2, ... through
# django-storages and boto3).
STORAGE_BACKEND = (env_str("STORAGE_BACKEND") or ("cloudinary" if USE_CLOUDINARY else "local")).strip().lower()
if STORAGE_BACKEND not in ("local", "cloudinary", "s3"):
    raise ImproperlyConfigured(f"STORAGE_BACKEND must be local, cloudinary or s3; got {STORAGE_BACKEND!r}.")
if USE_CLOUDINARY and STORAGE_BACKEND != "cloudinary":
    raise ImproperlyConfigured(f"USE_CLOUDINARY is on but STORAGE_BACKEND is {STORAGE_BACKEND!r}: choose one.")
USE_CLOUDINARY = STORAGE_BACKEND == "cloudinary"
CLOUDINARY_URL = None
CLOUDINARY_CREDENTIALS: dict[str, str] = {}
CLOUDINARY_STORAGE = {
    "ROOT_FOLDER": env_str("CLOUDINARY_ROOT_FOLDER") or "mediaprocessor",
    "UPLOADS_FOLDER": "uploads",
    "OUTPUTS_FOLDER": "outputs",
}
# Seconds to wait for Cloudinary to connect or to answer any one network read or write.
CLOUDINARY_TIMEOUT = 60
# Files over Cloudinary's 100 MB single-request limit go up in chunks (the SDK's upload_large) of this
# size; Cloudinary wants every chunk but the last to be at least 5 MB.
CLOUDINARY_LARGE_FILE_THRESHOLD = 100 * 1024 * 1024
CLOUDINARY_CHUNK_SIZE = 20 * 1024 * 1024
# CA certificates that the HTTPS clients talking to Cloudinary trust; None means certifi's bundle.
CLOUDINARY_CA_BUNDLE: str | None = None
if USE_CLOUDINARY:
    # Read only when enabled, so a laptop without Cloudinary needs none of these.
    CLOUDINARY_TIMEOUT = env_int("CLOUDINARY_TIMEOUT", CLOUDINARY_TIMEOUT, minimum=1)
    CLOUDINARY_CHUNK_SIZE = env_size("CLOUDINARY_CHUNK_SIZE", CLOUDINARY_CHUNK_SIZE)
    if CLOUDINARY_CHUNK_SIZE < 5 * 1024 * 1024:
        raise ImproperlyConfigured(f"CLOUDINARY_CHUNK_SIZE must be at least 5MB; got {CLOUDINARY_CHUNK_SIZE} bytes.")
    # The variables requests and OpenSSL honour, so a proxy's or a private endpoint's CA works here too.
    CLOUDINARY_CA_BUNDLE = env_str("REQUESTS_CA_BUNDLE") or env_str("SSL_CERT_FILE") or None
    if CLOUDINARY_CA_BUNDLE and not Path(CLOUDINARY_CA_BUNDLE).is_file():
        raise ImproperlyConfigured(
            f"REQUESTS_CA_BUNDLE / SSL_CERT_FILE must name a CA certificate file; got {CLOUDINARY_CA_BUNDLE!r}."
        )
    CLOUDINARY_URL = env_url("CLOUDINARY_URL", None, schemes=("cloudinary",))
    if CLOUDINARY_URL is None:
        CLOUDINARY_CREDENTIALS = {
            name: env_str(f"CLOUDINARY_{name.upper()}") or "" for name in ("cloud_name", "api_key", "api_secret")
        }
        missing = [f"CLOUDINARY_{name.upper()}" for name, value in CLOUDINARY_CREDENTIALS.items() if not value]
        if missing:
            raise ImproperlyConfigured(
                "USE_CLOUDINARY is on: set CLOUDINARY_URL, or all of " + ", ".join(missing) + "."
            )

# --- Where stored files live ------------------------------------------------------------------
# Seconds a download link (a signed Cloudinary or S3 URL) stays valid.
DOWNLOAD_URL_TTL = env_int("DOWNLOAD_URL_TTL", 3600, minimum=1)

# S3-compatible object storage (STORAGE_BACKEND=s3). The bucket is private: every object is
# reached through the credentials or a pre-signed URL.
AWS_STORAGE_BUCKET_NAME: str | None = None
AWS_S3_ENDPOINT_URL: str | None = None
AWS_ACCESS_KEY_ID: str | None = None
AWS_SECRET_ACCESS_KEY: str | None = None
AWS_S3_REGION_NAME: str | None = None
# Seconds to wait for S3 to connect or to answer any one read.
S3_TIMEOUT = 60
# Files larger than this go up as a multipart upload (boto3's managed transfer), in parts of
# S3_MULTIPART_CHUNK_SIZE (S3 wants every part but the last to be at least 5 MB).
S3_MULTIPART_THRESHOLD = 64 * 1024 * 1024
S3_MULTIPART_CHUNK_SIZE = 16 * 1024 * 1024
if STORAGE_BACKEND == "s3":
    AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME") or None
    if not AWS_STORAGE_BUCKET_NAME:
        raise ImproperlyConfigured("STORAGE_BACKEND is s3: set AWS_STORAGE_BUCKET_NAME.")
    AWS_S3_ENDPOINT_URL = env_url("AWS_S3_ENDPOINT_URL", None, schemes=("http", "https"))
    # None: boto3's own chain (environment, ~/.aws, an instance role) finds the credentials.
    AWS_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID") or None
    AWS_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY") or None
    AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME") or None
    S3_TIMEOUT = env_int("S3_TIMEOUT", S3_TIMEOUT, minimum=1)
    S3_MULTIPART_THRESHOLD = env_size("S3_MULTIPART_THRESHOLD", S3_MULTIPART_THRESHOLD)
    S3_MULTIPART_CHUNK_SIZE = env_size("S3_MULTIPART_CHUNK_SIZE", S3_MULTIPART_CHUNK_SIZE)
    if S3_MULTIPART_CHUNK_SIZE < 5 * 1024 * 1024:
        raise ImproperlyConfigured(
            f"S3_MULTIPART_CHUNK_SIZE must be at least 5MB; got {S3_MULTIPART_CHUNK_SIZE} bytes."
        )

# --- Web serving (config/gunicorn.py; docs/deployment.md) ----------------------------------------
from config.settings.web_settings import (  # noqa: E402, F401
    WEB_CONCURRENCY,
    WEB_STATUS_DB_CONNECTIONS,
    WEB_THREADS,
    WEB_TIMEOUT,
)

# --- Recovery (apps/operations/services/recovery.py) -----------------------------------------
# A running job refreshes its operation's heartbeat in the database, and its RQ worker the job's
# execution in Redis, this often.
JOB_HEARTBEAT_SECONDS = env_int("JOB_HEARTBEAT_SECONDS", 10, minimum=1)
# A processing operation whose two heartbeats are both older than this has lost its worker (killed,
# machine gone): the recovery sweep queues it again, or fails it after RECOVERY_MAX_ATTEMPTS
# interrupted attempts. RQ alone notices a dead worker only after its maintenance interval (10 min).
RECOVERY_STALE_SECONDS = env_int("RECOVERY_STALE_SECONDS", 45, minimum=1)
RECOVERY_INTERVAL_SECONDS = env_int("RECOVERY_INTERVAL_SECONDS", 30, minimum=1)
RECOVERY_MAX_ATTEMPTS = env_int("RECOVERY_MAX_ATTEMPTS", 3, minimum=1)
if RECOVERY_STALE_SECONDS < 3 * JOB_HEARTBEAT_SECONDS:
    # Fewer than three missed beats would take a slow database write for a dead worker.
    raise ImproperlyConfigured(
        f"RECOVERY_STALE_SECONDS ({RECOVERY_STALE_SECONDS}) must be at least three times "
        f"JOB_HEARTBEAT_SECONDS ({JOB_HEARTBEAT_SECONDS})."
    )

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_url(
    "DATABASE_URL",
    None,
    schemes=("postgres", "postgresql", "pgsql", "sqlite"),
)
# Typed loosely: dj_database_url's TypedDict says NAME is a str, Django also takes the Path below.
DATABASES: dict[str, Mapping[str, Any]]
# The web tier (config/asgi.py turns this on) runs each request's synchronous part in a thread of
# its own, where Django's persistent connections would be opened per request and never reused: it
# borrows from a psycopg pool of WEB_THREADS connections per process instead, checked and renewed
# by the pool rather than by a query per request. Processes that fork (RQ's workers) keep plain
# per-process connections: a pool's sockets must not be shared with a forked child.
DATABASE_POOL = env_bool("DATABASE_POOL", False)
# A link to PostgreSQL that dies silently (a host cut off, a peer gone without a FIN) fails a query
# within DATABASE_LINK_TIMEOUT seconds instead of after the kernel's ~15 minutes of retransmits:
# libpq's tcp_user_timeout ends a write that stays unacknowledged that long, TCP keepalives end an
# idle or waiting connection whose peer stopped answering, connect_timeout a connection attempt. A
# cut-off worker's job thereby stops its FFmpeg before the recovery sweep can run it elsewhere
# (docs/guarantees.md), so it must stay below RECOVERY_STALE_SECONDS - JOB_HEARTBEAT_SECONDS: by
# default half of that, at most 15 s.
DATABASE_LINK_TIMEOUT = env_int(
    "DATABASE_LINK_TIMEOUT", min(15, max(1, (RECOVERY_STALE_SECONDS - JOB_HEARTBEAT_SECONDS) // 2)), minimum=1
)
if DATABASE_LINK_TIMEOUT >= RECOVERY_STALE_SECONDS - JOB_HEARTBEAT_SECONDS:
    # A cut-off job must notice its dead database link (and stop) before it can be replaced.
    raise ImproperlyConfigured(
        f"DATABASE_LINK_TIMEOUT ({DATABASE_LINK_TIMEOUT}) must be below RECOVERY_STALE_SECONDS "
        f"({RECOVERY_STALE_SECONDS}) - JOB_HEARTBEAT_SECONDS ({JOB_HEARTBEAT_SECONDS})."
    )
DATABASE_LINK_OPTIONS = {
    "connect_timeout": DATABASE_LINK_TIMEOUT,
    "keepalives": 1,
    "keepalives_idle": max(1, DATABASE_LINK_TIMEOUT // 3),
    "keepalives_interval": max(1, DATABASE_LINK_TIMEOUT // 6),
    "keepalives_count": 3,
    "tcp_user_timeout": DATABASE_LINK_TIMEOUT * 1000,
}
if DATABASE_URL and DATABASE_POOL and not DATABASE_URL.startswith("sqlite"):
    pool = {"min_size": 1, "max_size": WEB_THREADS, "timeout": WEB_TIMEOUT, "max_idle": 300}
    parsed = dj_database_url.parse(DATABASE_URL)
    DATABASES = {"default": {**parsed, "OPTIONS": {**DATABASE_LINK_OPTIONS, **parsed.get("OPTIONS", {}), "pool": pool}}}
elif DATABASE_URL and not DATABASE_URL.startswith("sqlite"):
    parsed = dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    DATABASES = {"default": {**parsed, "OPTIONS": {**DATABASE_LINK_OPTIONS, **parsed.get("OPTIONS", {})}}}
elif DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    # The embedded default: one SQLite file beside the stored media, in WAL mode with a busy
    # timeout so that the web process and the workers can write concurrently.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": STORAGE_ROOT / "konvrt.sqlite3",
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }

# --- Redis, cache and queues ----------------------------------------------------------------
from config.settings.rq_settings import REDIS_URL, RQ_QUEUES, WORKER_CONFIG  # noqa: E402, F401

CACHES: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "konvrt",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}


# Enqueue immediately: the queue manager itself waits for the commit (and must see a Redis error
# to leave the operation pending), so django-rq's own deferral would hide failures.
RQ = {"COMMIT_MODE": "auto"}

# --- Sessions (anonymous identity) -----------------------------------------------------------
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = 30 * 24 * 60 * 60
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_HEADER_NAME = "X-Session-Key"

# --- CORS -----------------------------------------------------------------------------------
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", ["http://localhost:3000"])
CORS_ALLOW_CREDENTIALS = True
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "origin",
    "user-agent",
    "x-requested-with",
    "x-session-key",
    # tus 1.0.0 (/api/v1/uploads/)
    "tus-resumable",
    "upload-length",
    "upload-metadata",
    "upload-offset",
    "upload-checksum",
    "upload-concat",
    "upload-defer-length",
    "x-http-method-override",
)
CORS_EXPOSE_HEADERS = (
    "X-Session-Key",
    "Retry-After",
    "Content-Disposition",
    # tus 1.0.0: what a browser client must be able to read
    "Location",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Metadata",
    "Upload-Expires",
)
CORS_URLS_REGEX = r"^/api/.*$"

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    # A cookie session's writes only from this site or an allowed frontend (apps/api/permissions.py).
    "DEFAULT_PERMISSION_CLASSES": ["apps.api.permissions.CookieWritesFromAllowedOrigins"],
    "DEFAULT_RENDERER_CLASSES": ["apps.api.renderers.SafeJSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Every error, DRF's and ours, in the error envelope; throttles and pagination are set per
    # view in apps/api (see apps/api/throttling.py for how clients are keyed).
    "EXCEPTION_HANDLER": "apps.api.exceptions.api_exception_handler",
    # How many proxies in front of the web server append to X-Forwarded-For (Railway's router: 1).
    # The client is that many entries from the right; 0 means the socket's address (apps.core.utils.client_ip).
    "NUM_PROXIES": env_int("NUM_PROXIES", 0, minimum=0),
    "DEFAULT_THROTTLE_RATES": {
        "anon_burst": env_rate("THROTTLE_ANON_BURST", "60/minute"),
        "anon_sustained": env_rate("THROTTLE_ANON_SUSTAINED", "1000/day"),
        "uploads": env_rate("THROTTLE_UPLOADS", "10/hour"),
        "status_checks": env_rate("THROTTLE_STATUS_CHECKS", "120/minute"),
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Konvrt API",
    "DESCRIPTION": "Upload a video, image or audio file with an operation; poll its status; download the result.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # 3.1 says "object or null" exactly (oneOf with type null), which 3.0's nullable cannot for
    # a referenced component such as output_file.
    "OAS_VERSION": "3.1.0",
    # The anonymous identity, so that Swagger UI's "Authorize" can send a session key.
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "sessionKey": {"type": "apiKey", "in": "header", "name": "X-Session-Key"},
            "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
        }
    },
    # Either identity, or none: an anonymous first request is accepted (and may start a session).
    "SECURITY": [{"sessionKey": []}, {"sessionCookie": []}, {}],
    "ENUM_NAME_OVERRIDES": {
        "OperationStatusEnum": "apps.operations.enums.OperationStatus",
        "PhaseEnum": "apps.operations.enums.ProcessingPhase",
        "HealthStatusEnum": ["healthy", "degraded"],
    },
}

# --- Fairness and safety limits (apps/operations/services/quotas.py, health) ------------------
# Operations of one session pending, queued or processing at once; more is a 429.
MAX_ACTIVE_PER_SESSION = env_int("MAX_ACTIVE_PER_SESSION", 3, minimum=1)
# Bytes one session's operations may keep stored (inputs and results); more is a 413 quota_exceeded.
SESSION_STORAGE_QUOTA = env_size("SESSION_STORAGE_QUOTA", 2 * 1024 * 1024 * 1024)
# Below this much free space on the storage or temp disk, /health/ reports storage degraded.
MIN_FREE_DISK = env_size("MIN_FREE_DISK", 1024 * 1024 * 1024)

# --- Media processing -----------------------------------------------------------------------
FFMPEG_BINARY = env_str("FFMPEG_BINARY") or None
# Caps checked by the worker on the probed input, so that no file can exhaust a worker whatever
# its size on disk: decoded image pixels, video frame pixels (8K), media duration and the frames
# of an animated GIF kept as an animated WebP.
PROCESSING_MAX_IMAGE_PIXELS = env_int("PROCESSING_MAX_IMAGE_PIXELS", 50_000_000, minimum=1)
PROCESSING_MAX_VIDEO_PIXELS = env_int("PROCESSING_MAX_VIDEO_PIXELS", 7680 * 4320, minimum=1)
PROCESSING_MAX_DURATION_SECONDS = env_int("PROCESSING_MAX_DURATION_SECONDS", 4 * 60 * 60, minimum=1)
PROCESSING_MAX_ANIMATION_FRAMES = env_int("PROCESSING_MAX_ANIMATION_FRAMES", 500, minimum=1)
# Frames × canvas pixels an animation may cost to convert (every frame is decoded onto the whole
# canvas): 500 MP is 500 frames of 1000×1000.
PROCESSING_MAX_ANIMATION_PIXELS = env_int("PROCESSING_MAX_ANIMATION_PIXELS", 500_000_000, minimum=1)
# The memory one image job may use (decoded pictures and encoder buffers, above the worker's own):
# an image that would need more fails with a sentence before it is decoded (apps/processors/memory.py).
IMAGE_MEMORY_LIMIT = env_size("IMAGE_MEMORY_LIMIT", 512 * 1024 * 1024)
# The largest result a job may write (FFmpeg's -fs); a larger one fails instead of filling the disk.
PROCESSING_MAX_OUTPUT_SIZE = env_size("PROCESSING_MAX_OUTPUT_SIZE", 2 * 1024 * 1024 * 1024)
# Each FFmpeg run's share of the machine: threads for decoding, filtering and encoding, and the
# address space it may map (RLIMIT_AS, Linux; 0 = unlimited). Address space, not resident memory:
# with 4 threads the bundled FFmpeg maps ~500 MB for audio, ~1.7 GB for a 4K and ~3.7 GB for an 8K
# H.264 encode (the largest picture PROCESSING_MAX_VIDEO_PIXELS lets through).
FFMPEG_THREADS = env_int("FFMPEG_THREADS", 4, minimum=1)
FFMPEG_MEMORY_LIMIT_MB = env_int("FFMPEG_MEMORY_LIMIT_MB", 6144, minimum=0)
# An FFmpeg run whose output has not advanced for this long, while FFmpeg is still running, is
# stopped as stalled and the job retried (then failed): a hung encoder never holds a worker until
# its queue's time limit.
STALL_TIMEOUT_SECONDS = env_int("STALL_TIMEOUT_SECONDS", 120, minimum=1)


# --- Resumable uploads (tus) and import from a URL ---------------------------------------------
# An unfinished or unused tus upload is removed this long after it was created (its parts live in
# STORAGE_ROOT/tus, which every web process continuing an upload must share).
UPLOAD_EXPIRY_HOURS = env_int("UPLOAD_EXPIRY_HOURS", 24, minimum=1)
# The whole fetch of a source_url (connections, redirects, body), in seconds.
URL_IMPORT_TIMEOUT = env_int("URL_IMPORT_TIMEOUT", 300, minimum=1)
URL_IMPORT_MAX_REDIRECTS = 5

# --- Outbound requests (apps/core/outbound.py: webhooks, URL import) ---------------------------
# Requests to addresses a client gave never reach loopback, private, link-local, reserved or cloud
# metadata addresses, except those inside these networks (CIDRs), e.g. an internal media server.
OUTBOUND_ALLOWED_NETWORKS = env_networks("OUTBOUND_ALLOWED_NETWORKS", [])

# --- Webhooks and metrics (docs/webhooks.md, docs/metrics.md) ----------------------------------
# The absolute address of this deployment (https://media.example.com), for links sent outside a
# request (a webhook's download_url); without it, the address the operation was created through.
PUBLIC_BASE_URL = env_url("PUBLIC_BASE_URL", None, schemes=("http", "https"))
# Standard Webhooks signing secret: "whsec_" + base64 of 24 to 64 random bytes. Unset: no webhooks.
WEBHOOK_SECRET = env_str("WEBHOOK_SECRET") or None
if WEBHOOK_SECRET is not None:
    import base64
    import binascii

    try:
        _encoded = WEBHOOK_SECRET.removeprefix("whsec_")
        # Padding optional, as the Standard Webhooks libraries take it.
        _secret_bytes = base64.b64decode(_encoded + "=" * (-len(_encoded) % 4), validate=True)
    except binascii.Error:
        _secret_bytes = b""
    if not WEBHOOK_SECRET.startswith("whsec_") or not 24 <= len(_secret_bytes) <= 64:
        raise ImproperlyConfigured(
            "WEBHOOK_SECRET must be whsec_ followed by the base64 of 24 to 64 random bytes "
            "(python -c \"import base64, os; print('whsec_' + base64.b64encode(os.urandom(32)).decode())\")."
        )
# Seconds a receiver has to answer one delivery; then the attempt counts as failed.
WEBHOOK_TIMEOUT = env_int("WEBHOOK_TIMEOUT", 10, minimum=1)
# Seconds to wait before each retry of a delivery that was not answered with a 2xx (a 410 stops).
WEBHOOK_RETRY_DELAYS = env_int_list("WEBHOOK_RETRY_DELAYS", [10, 60, 300, 1800, 7200], minimum=1)
# GET /metrics answers only requests carrying "Authorization: Bearer <METRICS_TOKEN>"; unset: 404.
METRICS_TOKEN = env_str("METRICS_TOKEN") or None

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = (env_str("LOG_LEVEL") or "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
