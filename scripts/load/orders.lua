-- wrk script: POST /v1/orders, each request with its own Idempotency-Key (thread id + counter).
-- Environment: TOKEN (a customer's bearer token), PRODUCT (a product id), RUN (unique per wrk run:
-- without it a second run would repeat the first one's keys, and replay or meet its orders).
local counter = 0
local thread_id = 0
local token = os.getenv("TOKEN")
local product = os.getenv("PRODUCT")
local run = os.getenv("RUN") or tostring(os.time())
local body = '{"lines":[{"product_id":"' .. product .. '","quantity":1}]}'

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function request()
  counter = counter + 1
  local headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("load-%s-%d-%d", run, tid or 0, counter),
  }
  return wrk.format("POST", "/v1/orders", headers, body)
end

local non_201 = 0
function response(status, headers, body)
  if status ~= 201 then
    non_201 = non_201 + 1
    if non_201 <= 3 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
  end
end
