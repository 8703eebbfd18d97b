-- wrk script: cycle through the tokens in the file named by BENCH_TOKENS (one per line),
-- one `Authorization: Bearer` request each (a line `-`: a request without the header), and
-- print one JSON line with the results.
-- The requests are formatted once, in init, so the client does the same (tiny) work per
-- request whether the file holds one token or 10,000.
local reqs, i = {}, 0

function init(args)
  local path = os.getenv("BENCH_TOKENS")
  for line in io.lines(path) do
    if line == "-" then
      reqs[#reqs + 1] = wrk.format("GET", "/", {})
    elseif #line > 0 then
      reqs[#reqs + 1] = wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. line })
    end
  end
  if #reqs == 0 then error("no tokens in " .. tostring(path)) end
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
    '"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
