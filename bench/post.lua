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

-- bench/run --bodies N: BODIES_FILE holds N lines "<hex signature>\t<body>"; each request takes
-- the next. Built in init(), when wrk.headers has its Host.
if os.getenv("BODIES_FILE") then
  local requests = {}
  function init(args)
    for line in io.lines(os.getenv("BODIES_FILE")) do
      local sig, body = line:match("^(%x+)\t(.*)$")
      local headers = {}
      for k, v in pairs(wrk.headers) do headers[k] = v end
      headers["Sentry-Hook-Signature"] = sig
      requests[#requests + 1] = wrk.format(nil, nil, headers, body)
    end
  end
  local next_request = 0
  function request()
    next_request = next_request % #requests + 1
    return requests[next_request]
  end
end
