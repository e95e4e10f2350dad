-- wrk script: realistic CloudEvents for Courier's intake. Every request carries unique ids
-- (thread, counter, run tag), one of 1,024 partition keys and ~200 bytes of varied JSON data.
-- Env: COURIER_BENCH_SOURCE (/service), COURIER_BENCH_BATCH (events per request; 1 = a
-- single structured event, more = a JSON batch), COURIER_BENCH_TAG (id prefix of the run).
local source = os.getenv("COURIER_BENCH_SOURCE") or "/bench"
local batch = tonumber(os.getenv("COURIER_BENCH_BATCH") or "1")
local tag = os.getenv("COURIER_BENCH_TAG") or tostring(os.time())
local threads = {}
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

local words = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
  "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"}

local function event()
  counter = counter + 1
  local n = counter * 7919 + thread_id * 104729
  local key = n % 1024
  local items = {}
  for j = 1, 1 + n % 4 do
    items[j] = string.format('{"sku":"%s-%d","qty":%d}', words[1 + (n + j) % 16], (n * j) % 9973, 1 + j)
  end
  local note = string.rep(words[1 + n % 16] .. " ", 2 + n % 9)
  return string.format(
    '{"specversion":"1.0","id":"%s-%d-%d","source":"%s","type":"order.created",' ..
    '"partitionkey":"customer-%d","datacontenttype":"application/json",' ..
    '"data":{"customer":"customer-%d","amount":%d.%02d,"currency":"EUR","items":[%s],"note":"%s"}}',
    tag, thread_id, counter, source, key, key, n % 10000, n % 100, table.concat(items, ","), note)
end

function request()
  if batch <= 1 then
    return wrk.format("POST", nil, {["Content-Type"] = "application/cloudevents+json"}, event())
  end
  local events = {}
  for j = 1, batch do events[j] = event() end
  return wrk.format("POST", nil, {["Content-Type"] = "application/cloudevents-batch+json"},
    "[" .. table.concat(events, ",") .. "]")
end
