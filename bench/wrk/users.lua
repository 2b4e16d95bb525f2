-- wrk script: GET /users/{random seeded id}, and one request in every WRITE_EVERY a POST /users
-- with an email unique across threads and runs.
--   wrk -t2 -c32 -d5s -s bench/wrk/users.lua http://127.0.0.1:8080 -- <users> <write_every> <run>
-- write_every 0 sends reads only.

local users, write_every, run = 10000, 0, "0"
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  users = tonumber(args[1]) or users
  write_every = tonumber(args[2]) or 0
  run = args[3] or run
  math.randomseed(os.time() * 100 + thread_id)
end

local json = { ["Content-Type"] = "application/json" }

function request()
  counter = counter + 1
  if write_every > 0 and counter % write_every == 0 then
    local body = string.format('{"name":"Bench User","email":"bench-%s-%d-%d@example.com"}', run, thread_id, counter)
    return wrk.format("POST", "/users", json, body)
  end
  return wrk.format("GET", "/users/" .. math.random(1, users))
end
