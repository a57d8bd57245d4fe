-- wrk script: POST one signed Sentry webhook. BODY_FILE, SIG and RESOURCE come from bench/run.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Request-ID"] = "00000000000000000000000000000000"
wrk.headers["Sentry-Hook-Resource"] = os.getenv("RESOURCE") or "error"
wrk.headers["Sentry-Hook-Timestamp"] = tostring(os.time())
wrk.headers["Sentry-Hook-Signature"] = os.getenv("SIG")
