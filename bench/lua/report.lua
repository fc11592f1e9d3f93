-- One machine-readable line for run.sh: requests, seconds, errors, latency percentiles (ms).
-- Loaded by the request scripts beside it.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d secs=%.3f errors=%d p50=%.3f p90=%.3f p99=%.3f max=%.3f\n",
    summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
