"""The two Lua scripts that make sessions and revocations atomic with respect to each other.

Redis runs a script alone, so an exchange that opens a session and an admin who revokes it
cannot interleave: either the exchange's check sees the revocation (and mints nothing), or
the revocation's cascade sees the new child session (and revokes it). Both scripts build a
few keys from the prefix (children): fine on one Redis or Sentinel, not on Cluster.
The entry format is docs/revocation-protocol.md.
"""

from __future__ import annotations

OPEN_SESSION = """
-- KEYS: 1 revoked hash, 2 session, 3 by-user index, 4 by-agent index, 5 all-sessions index,
--       6 jti index, 7 parent's children (unused without a parent), 8 audit, 9 audit by user,
--       10 audit by agent
-- ARGV: 1 material iat, 2 field count n, 3..2+n fields, then record, sid, now, expires_at,
--       lineage_expires_at, has_parent, audit json, audit max len, per-subject audit max len,
--       audit retention seconds
local iat = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
for i = 1, n do
  local raw = redis.call('HGET', KEYS[1], ARGV[2 + i])
  if raw then
    local entry = cjson.decode(raw)
    if tonumber(entry.c) >= iat then return ARGV[2 + i] end
  end
end
local a = 2 + n
local record, sid = ARGV[a + 1], ARGV[a + 2]
local now, exp, lineage = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
local has_parent, audit = ARGV[a + 6], ARGV[a + 7]
local max_len, subject_max_len, retention = ARGV[a + 8], ARGV[a + 9], tonumber(ARGV[a + 10])
local ttl = math.max(exp - now, 1)
redis.call('SET', KEYS[2], record, 'EX', ttl)
redis.call('SET', KEYS[6], sid, 'EX', ttl)
-- Trim expired entries from the indexes, at most 100 per index per exchange. Expired
-- sessions pile up in the all-sessions and agent indexes whenever nobody exchanges (a quiet
-- night), and removing them all in one script blocked Redis for about 100 ms per 100,000
-- (make bench, session_scale). Each exchange adds one entry and removes up to 100, so a
-- backlog drains over the next exchanges; listings skip expired entries by score anyway.
for i = 3, 5 do
  redis.call('ZADD', KEYS[i], exp, sid)
  local stale = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', now, 'LIMIT', 0, 100)
  if #stale > 0 then
    redis.call('ZREM', KEYS[i], unpack(stale))
  end
end
for i = 3, 4 do
  redis.call('EXPIREAT', KEYS[i], lineage, 'GT')
  redis.call('EXPIREAT', KEYS[i], lineage, 'NX')
end
if has_parent == '1' then
  redis.call('ZADD', KEYS[7], exp, sid)
  redis.call('EXPIREAT', KEYS[7], lineage, 'GT')
  redis.call('EXPIREAT', KEYS[7], lineage, 'NX')
end
redis.call('XADD', KEYS[8], 'MAXLEN', '~', max_len, '*', 'r', audit)
for i = 9, 10 do
  redis.call('XADD', KEYS[i], 'MAXLEN', '~', subject_max_len, '*', 'r', audit)
  redis.call('EXPIRE', KEYS[i], retention)
end
return false
"""

REVOKE = """
-- KEYS: 1 revoked hash, 2 forget index, 3 revocation record, 4 revocations index,
--       5 audit, 6 audit by user, 7 audit by agent
-- ARGV: 1 now, 2 channel, 3 key prefix, 4 revocation id, 5 leeway, 6 revocation json,
--       7 audit json, 8 audit max len, 9 per-subject audit max len, 10 audit retention,
--       11 has user stream, 12 has agent stream, 13 entry count n, then n (field, c, f),
--       then cascade-from count m and m sids
local now, channel, prefix, rid = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local leeway = tonumber(ARGV[5])
local published = {}
local max_forget = now

local function put(field, c, f)
  local raw = redis.call('HGET', KEYS[1], field)
  if raw then
    local old = cjson.decode(raw)
    c = math.max(c, tonumber(old.c))
    f = math.max(f, tonumber(old.f))
  end
  redis.call('HSET', KEYS[1], field, cjson.encode({c = c, f = f, r = rid}))
  redis.call('ZADD', KEYS[2], f, field)
  published[#published + 1] = {field, c, f, rid}
  if f > max_forget then max_forget = f end
end

local i = 13
local n = tonumber(ARGV[i])
for j = 1, n do
  put(ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]))
  i = i + 3
end
local queue, seen = {}, {}
i = i + 1
local m = tonumber(ARGV[i])
for j = 1, m do
  queue[#queue + 1] = ARGV[i + j]
end
local head = 1
while head <= #queue do
  local sid = queue[head]
  head = head + 1
  if not seen[sid] then
    seen[sid] = true
    local children = redis.call('ZRANGE', prefix .. 'sessions:children:' .. sid, 0, -1,
                                'WITHSCORES')
    for c = 1, #children, 2 do
      local child, exp = children[c], tonumber(children[c + 1])
      put('sid:' .. child, exp + leeway, exp + leeway)
      queue[#queue + 1] = child
    end
  end
end

local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
if #stale > 0 then
  redis.call('HDEL', KEYS[1], unpack(stale))
  redis.call('ZREM', KEYS[2], unpack(stale))
end

redis.call('HSET', KEYS[3], 'r', ARGV[6], 'n', #published, 'f', max_forget)
redis.call('EXPIRE', KEYS[3], math.max(max_forget - now, 1) + 60)
redis.call('ZADD', KEYS[4], now, rid)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[10]))

-- the entry count travels as its own stream field: re-encoding the JSON in Lua would turn
-- empty arrays into objects
local count = tostring(#published)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[8], '*', 'r', ARGV[7], 'n', count)
if ARGV[11] == '1' then
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[9], '*', 'r', ARGV[7], 'n', count)
  redis.call('EXPIRE', KEYS[6], tonumber(ARGV[10]))
end
if ARGV[12] == '1' then
  redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[9], '*', 'r', ARGV[7], 'n', count)
  redis.call('EXPIRE', KEYS[7], tonumber(ARGV[10]))
end
if #published > 0 then
  redis.call('PUBLISH', channel, cjson.encode({v = 1, entries = published}))
end
return #published
"""
