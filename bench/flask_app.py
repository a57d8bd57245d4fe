"""The reference Sentry webhook receiver bench/run compares switchyard with: Flask under gunicorn.

What a careful hand-written receiver does per webhook, in the shape of Sentry's
integration-platform example: verify Sentry-Hook-Signature (lower-case hex HMAC-SHA256 of the raw
body, keyed with the client secret) in constant time, parse the JSON, check that the issue's
project is one this receiver serves (data.issue.project, by slug or name), answer 200.

Environment: SENTRY_CLIENT_SECRET (required), BENCH_PROJECTS (comma-separated slugs/names,
default "front-end"). Run: gunicorn --chdir bench flask_app:app
"""
import hashlib
import hmac
import json
import os

from flask import Flask, request

SECRET = os.environ["SENTRY_CLIENT_SECRET"].encode()
PROJECTS = frozenset(os.environ.get("BENCH_PROJECTS", "front-end").split(","))

app = Flask(__name__)


@app.post("/hooks/sentry")
def sentry_hook():
    body = request.get_data(cache=False)
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest().encode()
    given = request.headers.get("Sentry-Hook-Signature", "").encode("latin-1")
    if not hmac.compare_digest(expected, given):
        return "bad signature\n", 401
    try:
        payload = json.loads(body)
    except ValueError:
        return "malformed JSON\n", 400
    data = payload.get("data") if isinstance(payload, dict) else None
    issue = data.get("issue") if isinstance(data, dict) else None
    project = issue.get("project") if isinstance(issue, dict) else None
    if not isinstance(project, dict) or (
        project.get("slug") not in PROJECTS and project.get("name") not in PROJECTS
    ):
        return "not a project served here\n", 403
    return "ok\n", 200
