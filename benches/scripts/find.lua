-- wrk script: FindContent for random residents of ei-load's data set, so the
-- server's own lookup rate and latency can be measured by a C client beside (or
-- instead of) ei-load. Needs an index pre-loaded by ei-load (`--preload N`) on a
-- server with HSA-id 5565594230:
--
--   ei-load --url http://127.0.0.1:8080 --preload 1000000 --update-clients 0 \
--     --single-clients 0 --find-clients 0 --mixed-find-clients 0 --compact false
--   wrk -t2 -c16 -d10s --latency -s benches/scripts/find.lua http://127.0.0.1:8080 \
--     -- 1000000 50
--
-- Arguments: the posts pre-loaded (default 1000000) and the rows per lookup, 50
-- (resident + domain) or 10 (+ categorization). wrk reports replies that are not
-- HTTP 200 as "Non-2xx or 3xx responses".

local residents = 4000
local rows = 50

local head = '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
  .. ' xmlns:a="urn:riv:itintegration:registry:1"'
  .. ' xmlns:r="urn:riv:itintegration:engagementindex:FindContentResponder:1"'
  .. ' xmlns:c="urn:riv:itintegration:engagementindex:1"><soap:Header>'
  .. '<a:LogicalAddress>5565594230</a:LogicalAddress></soap:Header><soap:Body>'
  .. '<r:FindContent><r:registeredResidentIdentification>'
local tail = '</r:FindContent></soap:Body></soap:Envelope>'

function init(args)
  local posts = tonumber(args[1] or "1000000")
  rows = tonumber(args[2] or "50")
  -- ei-load's bodies hold 1000 posts of 4 residents each.
  residents = math.max(1, math.floor(posts / 1000) * 4)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  wrk.method = "POST"
  wrk.path = "/skltp-ei/find-content-service/v1"
  wrk.headers["content-type"] = "text/xml; charset=UTF-8"
  wrk.headers["x-skltp-correlation-id"] = "wrk-find"
  wrk.headers["SOAPAction"] =
    "urn:riv:itintegration:engagementindex:FindContentResponder:1:FindContent"
end

function request()
  local r = string.format("%012d", 190000000000 + math.random(0, residents - 1))
  local d = math.random(1, 5)
  local body = head .. r .. '</r:registeredResidentIdentification>'
    .. '<r:serviceDomain>urn:riv:test:domain-' .. d .. '</r:serviceDomain>'
  if rows == 10 then
    body = body .. '<r:categorization>category-' .. math.random(1, 5)
      .. '</r:categorization>'
  end
  return wrk.format(nil, nil, nil, body .. tail)
end
