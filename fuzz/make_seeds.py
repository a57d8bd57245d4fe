#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into OUT_DIR/{request,config,rules,headers}.

Generated at run time (fuzz/run.sh) from files in the repo, so no corpus is committed:
  request: every Sentry payload of tests/fixtures/sentry-payloads wrapped into signed HTTP/1.1
           requests (Content-Length and chunked, pipelined, wrong signatures, /setup), each
           prefixed by the flags byte fuzz_request.cc reads;
  config:  routes.yaml, systemd/routes.yaml and the YAML documents embedded in
           tests/config/config_loader_test.cc;
  rules:   matcher and template strings from tests/rules/, each with a payload after a NUL byte.
  headers: Retry-After values and RFC 3339 timestamps, each after 8 bytes picking "now" and a status.
"""
import hashlib
import hmac
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAYLOADS = ROOT / "tests" / "fixtures" / "sentry-payloads"

# Must match fuzz_request.cc.
SECRET = b"fuzz-sentry-client-secret-7f3a9c"
STRICT_SECRET = b"fuzz-strict-client-secret-41d8e2"
NOW_SECONDS = 1700000000
FLAG_SIGN = 1 << 0
FLAG_APP_SIGNATURE = 1 << 1
FLAG_UPPER_HEX = 1 << 2
FLAG_STORE_DUPLICATE = 2 << 3
FLAG_STORE_UNAVAILABLE = 3 << 3
FLAG_STOPPING = 1 << 5
FLAG_TIMESTAMP = 1 << 6
FLAG_NO_INSTALLER = 1 << 7


def sign(secret, body):
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def request(body, resource, path="/hooks/sentry", secret=SECRET, chunked=False, extra=(),
            signature=None, method="POST", keep_alive=True, timestamp=NOW_SECONDS):
    sig = sign(secret, body) if signature is None else signature
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:8080", "Content-Type: application/json",
            "User-Agent: Sentry-Hookshot", "Request-ID: 0d6f4b7a-fuzz",
            f"Sentry-Hook-Resource: {resource}", f"Sentry-Hook-Timestamp: {timestamp}",
            f"Sentry-Hook-Signature: {sig}"]
    head += list(extra)
    if not keep_alive:
        head.append("Connection: close")
    if chunked:
        head.append("Transfer-Encoding: chunked")
        chunks = b""
        for i in range(0, len(body), 700):
            part = body[i:i + 700]
            chunks += b"%x\r\n" % len(part) + part + b"\r\n"
        return ("\r\n".join(head) + "\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def request_seeds():
    seeds = {}
    files = sorted(PAYLOADS.glob("*.json")) + sorted(PAYLOADS.glob("*.txt"))
    for f in files:
        name = f.name
        resource = name.split(".")[0]
        raw = f.read_bytes()
        try:
            compact = json.dumps(json.loads(raw), separators=(",", ":")).encode()
        except ValueError:
            compact = raw  # the NOT-VALID-JSON examples stay as they are
        seeds[f"{name}.plain"] = bytes([0]) + request(compact, resource)
        seeds[f"{name}.resign"] = bytes([FLAG_SIGN]) + request(compact, resource, signature="0" * 64)
        seeds[f"{name}.strict"] = bytes([FLAG_SIGN | FLAG_TIMESTAMP]) + request(
            compact, resource, path="/hooks/strict", secret=STRICT_SECRET)
    issue = json.dumps(json.loads((PAYLOADS / "issue.created.json").read_bytes()),
                       separators=(",", ":")).encode()
    install = json.dumps(json.loads((PAYLOADS / "installation.created.json").read_bytes()),
                         separators=(",", ":")).encode()
    seeds["chunked"] = bytes([0]) + request(issue, "issue", chunked=True)
    seeds["pretty-body"] = bytes([0]) + request((PAYLOADS / "error.created.json").read_bytes(),
                                                "error")
    seeds["pipelined"] = bytes([0]) + request(issue, "issue") + request(install, "installation") \
        + request(b"{}", "comment", keep_alive=False)
    seeds["app-signature-upper"] = bytes([FLAG_SIGN | FLAG_APP_SIGNATURE | FLAG_UPPER_HEX]) + \
        request(issue, "issue")
    # A timestamp whose milliseconds overflow int64 (found by this fuzzer, 2026-12-07).
    seeds["timestamp-overflow"] = bytes([FLAG_SIGN]) + request(
        issue, "issue", path="/hooks/strict", secret=STRICT_SECRET, timestamp=3225492126871584768)
    seeds["duplicate"] = bytes([FLAG_STORE_DUPLICATE]) + request(issue, "issue")
    seeds["unavailable"] = bytes([FLAG_STORE_UNAVAILABLE]) + request(issue, "issue")
    seeds["stopping"] = bytes([FLAG_STOPPING]) + request(issue, "issue")
    seeds["wrong-signature"] = bytes([0]) + request(issue, "issue", signature="ab" * 32)
    seeds["no-secret-source"] = bytes([0]) + request(issue, "issue", path="/hooks/nosecret")
    seeds["unknown-source"] = bytes([0]) + request(issue, "issue", path="/hooks/nope")
    seeds["missing-resource"] = bytes([0]) + request(issue, "")
    seeds["get-hook"] = bytes([0]) + b"GET /hooks/sentry HTTP/1.1\r\nHost: x\r\n\r\n"
    seeds["setup"] = bytes([0]) + (
        b"GET /setup/sentry?code=2c1d9e0f&installationId=7a485448-a9e2-4c85-8a3c-4f44175783c9"
        b"&orgSlug=acme HTTP/1.1\r\nHost: x\r\n\r\n")
    seeds["setup-refused"] = bytes([0]) + (
        b"GET /setup/sentry?code=bad1&installationId=%3Cscript%3Ex&orgSlug=a%26b HTTP/1.1\r\nHost: x\r\n\r\n")
    seeds["setup-error"] = bytes([0]) + (
        b"GET /setup/sentry?code=err1&installationId=u-1&orgSlug=%22o%27 HTTP/1.1\r\nHost: x\r\n\r\n")
    seeds["setup-no-installer"] = bytes([FLAG_NO_INSTALLER]) + (
        b"GET /setup/sentry?code=c&installationId=u-1&orgSlug=o HTTP/1.1\r\nHost: x\r\n\r\n")
    seeds["setup-internal"] = bytes([0]) + (
        b"HEAD /setup/internal?code=c&installationId=u-1 HTTP/1.1\r\nHost: x\r\n\r\n")
    seeds["setup-incomplete"] = bytes([0]) + b"GET /setup/sentry?code=x HTTP/1.1\r\nHost: x\r\n\r\n"
    seeds["setup-post"] = bytes([0]) + b"POST /setup/sentry HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    seeds["root"] = bytes([0]) + b"GET / HTTP/1.0\r\n\r\n"
    seeds["te-gzip-chunked"] = bytes([FLAG_SIGN]) + request(
        issue, "issue", chunked=True).replace(b"Transfer-Encoding: chunked",
                                              b"Transfer-Encoding: gzip, chunked")
    seeds["te-and-cl"] = bytes([FLAG_SIGN]) + request(
        issue, "issue", extra=["Transfer-Encoding: chunked"])
    seeds["expect-continue"] = bytes([FLAG_SIGN]) + request(
        issue, "issue", extra=["Expect: 100-continue"])
    seeds["http10"] = bytes([FLAG_SIGN]) + request(issue, "issue").replace(b"HTTP/1.1", b"HTTP/1.0")
    return seeds


def config_seeds():
    seeds = {"routes.yaml": (ROOT / "routes.yaml").read_bytes(),
             "systemd-routes.yaml": (ROOT / "systemd" / "routes.yaml").read_bytes()}
    test = (ROOT / "tests" / "config" / "config_loader_test.cc").read_text()
    for i, doc in enumerate(re.findall(r'R"yaml\((.*?)\)yaml"', test, re.S)):
        seeds[f"config_loader_test-{i}.yaml"] = doc.encode()
    seeds["interpolation.yaml"] = b"""sources:
  sentry:
    client_secret: ${env:FUZZ_SECRET}
    token: ${credential:token}
    client_id: ${env:NOPE:-fallback}$${literal}
sinks:
  ops:
    type: http
    url: https://example.com/${env:FUZZ_SECRET}
    headers: {Authorization: "Bearer ${credential:token}"}
routes:
  - name: r
    match: ['$header.x =~ "${env:FUZZ_SECRET}"']
    to: [{sink: ops, body: '{{ data.x | json }}'}]
"""
    return seeds


MATCHERS = [
    'action = "created"', 'data.issue.level =~ "e.*"', "a  !~  'x|y'", 'a!="!~"',
    'data.event.tags.0.1 =~ "Chrome .*"', '$resource = "issue"', '$installation.org = ""',
    '$header.User-Agent =~ "(?i)sentry.*"', '$issue.status = "x"', 'data.issue.count = "3"',
    'a = "q\\"b\\\\s\\n\\t"', 'x =~ "(a+)+$"', 'x =~ "[[:alpha:]]{2,5}\\\\d"',
]
TEMPLATES = [
    "[{{ data.issue.level }}] {{data.issue.title}}!", "{{action}}{{action}}",
    "{{ $source }}/{{ $resource }}/{{ $action }}/{{ $header.User-Agent }}",
    "{{ data.issue.tricky }}", '{{ data.issue.missing | default("{{ action }}") }}',
    "{{ data.issue.jp | truncate(9) }}", "{{ data.issue.emoji | truncate(5) | upper }}",
    "{{ data.issue.count | upper | json }}", '{{ data.issue.count | default("x") | json }}',
    "https://x/?q={{ data.issue.jp | truncate(2) | urlencode }}",
    "{{ data.event.tags | json }}", "{{ $header.x-dup }}", "{{ $issue.title | lower }}",
    "no placeholders } here }}", "{{ data.issue.none | default('n/a') }}",
]
RULE_PAYLOADS = [
    b"",  # no NUL: the harness's built-in payload
    b'\0{"action":"created","data":{"issue":{"title":"{{ action }}","level":"fatal"}}}',
    b'\0[1,2,{"a":null}]',
    b'\0{"data":{"issue":{"level":"error","jp":"\\u65e5\\u672c","count":1e300}}}',
]


def rules_seeds():
    seeds = {}
    for kind, texts in (("matcher", MATCHERS), ("template", TEMPLATES)):
        for i, text in enumerate(texts):
            for j, payload in enumerate(RULE_PAYLOADS):
                if j > 0 and i % 3 != j % 3:
                    continue  # a few payloads per expression are enough
                seeds[f"{kind}-{i}-{j}"] = text.encode() + payload
    for name in ("event_alert.triggered.json", "error.created.json"):
        seeds[f"payload-{name}"] = (b"{{ data.event.title | truncate(20) }} {{ data.event.tags.0.1"
                                    b" | urlencode }}\0" + (PAYLOADS / name).read_bytes())
    return seeds


def headers_seeds():
    """Retry-After values and RFC 3339 timestamps, after 8 bytes that pick "now" and a status."""
    values = [b"120", b"0", b" 7\t", b"99999999999999999999", b"3153600000",
              b"Sun, 06 Nov 1994 08:49:37 GMT", b"Fri, 31 Dec 9999 23:59:59 GMT",
              b"Sat, 01 Jan 0000 00:00:00 GMT", b"Sunday, 06-Nov-94 08:49:37 GMT",
              b"Sun Nov  6 08:49:37 1994", b"Thu, 29 Feb 2024 00:00:00 GMT",
              b"2019-08-08T04:25:09.870Z", b"2026-11-26T19:05:40Z", b"1969-12-31T00:00:00+01:00",
              b"0000-01-01T00:00:00.000Z", b"9999-12-31T23:59:59.999-23:59"]
    seeds = {}
    for i, v in enumerate(values):
        pick = (0x0500000000000000 | (1_700_000_000_000 + i * 86_400_000)).to_bytes(8, "little")
        seeds[f"value-{i}"] = pick + v
    return seeds


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_seeds.py OUT_DIR")
    out = pathlib.Path(sys.argv[1])
    for target, seeds in (("request", request_seeds()), ("config", config_seeds()),
                          ("rules", rules_seeds()), ("headers", headers_seeds())):
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (d / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds in {d}")


if __name__ == "__main__":
    main()
