-- wrk script: HTTP/1.1 pipelining, the standard wrk way (as wrk's scripts/pipeline.lua and the
-- TechEmpower plaintext test): every write carries DEPTH requests back to back on one
-- connection, and wrk sends the next batch once all DEPTH responses are in. wrk counts
-- responses, so its requests and requests/s are single requests, not batches; its latency
-- figures are per batch.
--
--   wrk -t1 -c64 -d10s --latency -s scripts/wrk-pipeline.lua http://127.0.0.1:8080 -- 16
--   wrk ... -s scripts/wrk-pipeline.lua http://127.0.0.1:8080 -- 16 /json
--
-- Arguments after `--`: DEPTH (default 16), PATH (default /plaintext).

local batch

init = function(args)
   local depth = tonumber(args[1] or "16")
   if depth == nil or depth < 1 then
      error("wrk-pipeline.lua: DEPTH must be a positive number, got " .. tostring(args[1]))
   end
   local path = args[2] or "/plaintext"
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format("GET", path)
   end
   batch = table.concat(r)
end

request = function()
   return batch
end
