"""The deployable surface: one functions-framework HTTP function per group of routes.

Each function serves its paths (see README, "API"), e.g. the `alerts` function answers
`GET /api/alerts/active` and `POST /api/alerts/{id}/resolve`. The store is created on the first
request of an instance and reused by the next ones.
"""

import functions_framework
from leadwatch import logs
from leadwatch.config import load_settings, require_backend
from leadwatch.http.app import Api
from leadwatch.http.identity import VerifiedAccess
from leadwatch.stores.store import make_store

logs.setup()  # one JSON line per request, with Cloud Logging's severity; errors with their traceback inside

# Read once at cold start: a missing setting fails here, naming it. Deployed functions are never open.
_settings = require_backend(load_settings())
_api = Api.from_settings(_settings, lambda: make_store(_settings), VerifiedAccess(_settings))


@functions_framework.http
def activities(request):
    return _api.handle(request, "activities")


@functions_framework.http
def alerts(request):
    return _api.handle(request, "alerts")


@functions_framework.http
def sweep(request):
    return _api.handle(request, "sweep")


@functions_framework.http
def leads(request):
    return _api.handle(request, "leads")


@functions_framework.http
def whatsapp(request):
    return _api.handle(request, "whatsapp")


@functions_framework.http
def greenapi_webhook(request):
    return _api.handle(request, "greenapi_webhook")


@functions_framework.http
def rules(request):
    return _api.handle(request, "rules")


@functions_framework.http
def retention(request):
    return _api.handle(request, "retention")


@functions_framework.http
def health(request):
    return _api.handle(request, "health")


@functions_framework.http
def webhooks(request):
    return _api.handle(request, "webhooks")


@functions_framework.http
def notifications(request):
    return _api.handle(request, "notifications")


@functions_framework.http
def members(request):
    return _api.handle(request, "members")


@functions_framework.http
def email(request):
    return _api.handle(request, "email")


@functions_framework.http
def email_webhook(request):
    return _api.handle(request, "email_webhook")
