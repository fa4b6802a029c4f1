"""A real OAuth2 authorization server for tests: django-oauth-toolkit on 127.0.0.1.

Run as a subprocess (`python oauth_server.py --state-dir DIR [--access-token-expire-s N]`).
It configures Django in code, migrates a fresh SQLite database in DIR, creates a user and
three applications, prints one JSON line (port, client ids, the confidential client's secret,
the user's credentials) once it accepts connections, then serves until killed.

Endpoints: /accounts/login/ (Django's login view), /o/ (authorize, token, revoke_token,
introspect, ...), /api/me (a protected resource: {"user": NAME} for a valid bearer token).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

USERNAME = "alice"
PASSWORD = "alice-password-1"  # a throwaway test user
# DOT accepts any port on a registered loopback redirect URI (RFC 8252 section 7.3), so one
# registration serves every ephemeral port the daemon's listener gets.
REDIRECT_URI = "http://127.0.0.1/callback"

_LOGIN_TEMPLATE = """<!doctype html><title>login</title>
<form method="post">{% csrf_token %}{{ form.as_p }}<input type="hidden" name="next" value="{{ next }}">
<button type="submit">log in</button></form>"""


def configure(db: Path, access_token_expire_s: int) -> None:
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_urlsafe(32),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        USE_TZ=True,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(db), "OPTIONS": {"timeout": 20}}},
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "oauth2_provider",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": False,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ],
                    # DOT's own templates (authorize.html) from the app, the login page from memory.
                    "loaders": [
                        ("django.template.loaders.locmem.Loader", {"registration/login.html": _LOGIN_TEMPLATE}),
                        "django.template.loaders.app_directories.Loader",
                    ],
                },
            }
        ],
        LOGIN_URL="/accounts/login/",
        # Server errors with their tracebacks go to stderr, which the fixture keeps in a log file.
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler"}},
            "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
        },
        # The default PBKDF2 costs ~0.3 s per hash; DOT hashes client secrets with it on every
        # confidential token request too. MD5 keeps the suite fast; nothing here is worth guarding.
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        OAUTH2_PROVIDER={
            "PKCE_REQUIRED": True,
            "ACCESS_TOKEN_EXPIRE_SECONDS": access_token_expire_s,
            # A used refresh token is revoked and a new one issued, as most providers do; no grace
            # period, so a second refresh with the old token is refused (tests rely on that to see
            # that concurrent users refresh once).
            "ROTATE_REFRESH_TOKEN": True,
            "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
            "SCOPES": {"read": "Read", "write": "Write"},
            "DEFAULT_SCOPES": ["read"],
        },
    )


def _me(request: Any) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"user": request.resource_owner.username})


def _urlpatterns() -> list[Any]:
    from django.contrib.auth import views as auth_views
    from django.urls import include, path
    from oauth2_provider.decorators import protected_resource

    return [
        path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
        path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
        path("api/me", protected_resource()(_me), name="me"),
    ]


def populate() -> dict[str, str]:
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import get_application_model

    user = get_user_model().objects.create_user(USERNAME, password=PASSWORD)
    app_model = get_application_model()

    def app(name: str, client_type: str, skip: bool, secret: str = "") -> str:
        a = app_model(
            name=name,
            user=user,
            client_type=client_type,
            authorization_grant_type=app_model.GRANT_AUTHORIZATION_CODE,
            redirect_uris=REDIRECT_URI,
            skip_authorization=skip,
            algorithm="",
        )
        if secret:
            a.client_secret = secret  # hashed on save; only the plaintext printed below can use it
        a.save()
        return str(a.client_id)

    confidential_secret = secrets.token_urlsafe(32)
    return {
        "public_client_id": app("goex-public", app_model.CLIENT_PUBLIC, skip=True),
        # Same, but the user is asked to approve, so a test can press "Cancel" (access_denied).
        "consent_client_id": app("goex-consent", app_model.CLIENT_PUBLIC, skip=False),
        "confidential_client_id": app(
            "goex-confidential", app_model.CLIENT_CONFIDENTIAL, skip=True, secret=confidential_secret
        ),
        "confidential_client_secret": confidential_secret,
        "username": USERNAME,
        "password": PASSWORD,
    }


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry codes and tokens in query strings: keep them out of the log.
        sys.stderr.write(f"{self.command} {self.path.partition('?')[0]} -> {args[1] if len(args) > 1 else ''}\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--access-token-expire-s", type=int, default=3600)
    args = ap.parse_args()
    args.state_dir.mkdir(parents=True, exist_ok=True)
    configure(args.state_dir / "oauth.sqlite3", args.access_token_expire_s)

    import django
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    django.setup()
    urlpatterns[:] = _urlpatterns()
    call_command("migrate", verbosity=0, interactive=False)
    info = populate()
    app = get_wsgi_application()
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_Handler)
    port = server.server_address[1]
    print(
        json.dumps({"port": port, "access_token_expire_s": args.access_token_expire_s, **info}),
        flush=True,
    )
    server.serve_forever()


# ROOT_URLCONF names this module; Django reads the patterns on the first request, after
# main() has filled them in (DOT's views can only be imported once Django is set up).
urlpatterns: list[Any] = []

if __name__ == "__main__":
    main()
