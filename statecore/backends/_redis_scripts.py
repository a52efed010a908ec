"""The Lua scripts of the Redis store, each loaded once and run with EVALSHA.

Times are nanoseconds beyond 2**53, so Lua (doubles only) compares them as decimal
strings; sequence numbers and epochs are compared as the strings Python wrote.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

_LUA_INT_CMP = """
local function int_cmp(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then return na and -1 or 1 end
  if na then a, b = string.sub(a, 2), string.sub(b, 2) end
  local r = 0
  if #a ~= #b then r = (#a < #b) and -1 or 1
  elseif a ~= b then r = (a < b) and -1 or 1 end
  if na then r = -r end
  return r
end
"""

# KEYS: events, meta.  ARGV: expected, new_head, lease_epoch|'', bad_offset, n_events,
# n_set, n_del, started|'', then n_set field/value pairs, n_del fields, then (with events)
# one: the events end to end, each a 20-byte header (the lengths of its epoch, prev_hash,
# kind, ts and payload, 4 bytes each, big-endian) and those fields. One argument, not six
# per event: the client's packing costs per argument; Lua reads a header in one call
# (string.byte) and cuts the fields out in C (string.sub). Event j is numbered
# expected + j.
# Returns {0, head, need_index, old_indexed} or {1, head} {2, epoch} {3, offset} {4, last}.
_LUA_APPEND = """
local head = redis.call('HGET', KEYS[2], 'head') or '0'
if head ~= ARGV[1] then return {1, head} end
if ARGV[3] ~= '' then
  local epoch = redis.call('HGET', KEYS[2], 'epoch') or '0'
  if epoch ~= ARGV[3] then return {2, epoch} end
end
if ARGV[4] ~= '0' then return {3, ARGV[4]} end
local n, nset, ndel = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if n == 0 and nset == 0 then return {0, head, 0, ''} end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
last = last and last[1] or '0-0'
if last ~= '0-' .. head then return {4, last} end
local i = 9
if nset > 0 then
  local fields = {}
  for j = 1, 2 * nset do fields[j] = ARGV[i + j - 1] end
  redis.call('HSET', KEYS[2], unpack(fields))
  i = i + 2 * nset
end
for _ = 1, ndel do redis.call('HDEL', KEYS[2], ARGV[i]); i = i + 1 end
if n > 0 then
  local blob, pos, seq, byte, sub = ARGV[i], 1, tonumber(ARGV[1]), string.byte, string.sub
  for _ = 1, n do
    local a1, a2, a3, a4, b1, b2, b3, b4, c1, c2, c3, c4, d1, d2, d3, d4, e1, e2, e3, e4 =
      byte(blob, pos, pos + 19)
    local le = ((a1 * 256 + a2) * 256 + a3) * 256 + a4
    local lh = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
    local lk = ((c1 * 256 + c2) * 256 + c3) * 256 + c4
    local lt = ((d1 * 256 + d2) * 256 + d3) * 256 + d4
    local lp = ((e1 * 256 + e2) * 256 + e3) * 256 + e4
    local e = pos + 20
    local h = e + le
    local k = h + lh
    local t = k + lk
    local p = t + lt
    pos = p + lp
    seq = seq + 1
    redis.call('XADD', KEYS[1], string.format('0-%d', seq), 'e', sub(blob, e, h - 1),
               'h', sub(blob, h, k - 1), 'k', sub(blob, k, t - 1), 't', sub(blob, t, p - 1),
               'p', sub(blob, p, pos - 1))
  end
end
if n > 0 then redis.call('HSET', KEYS[2], 'head', ARGV[2]); head = ARGV[2] end
if ARGV[8] ~= '' then
  local indexed = redis.call('HGET', KEYS[2], 'indexed') or ''
  if indexed ~= ARGV[8] then return {0, head, 1, indexed} end
end
return {0, head, 0, ''}
"""

# KEYS: lease, meta.  ARGV: owner, now, expires.  Returns {0, epoch} or {1, owner, epoch}.
# A run id pruned since its last lease has its last epoch in 'retired_epoch' (see PRUNE);
# counting on from it keeps epochs increasing per run id across prunes.
_LUA_ACQUIRE = (
    _LUA_INT_CMP
    + """
local cur = redis.call('HMGET', KEYS[1], 'owner', 'epoch', 'expires')
if cur[1] and cur[1] ~= ARGV[1] and int_cmp(cur[3], ARGV[2]) > 0 then
  return {1, cur[1], cur[2]}
end
local retired = redis.call('HGET', KEYS[2], 'retired_epoch')
if retired then
  redis.call('HSET', KEYS[2], 'epoch', retired)
  redis.call('HDEL', KEYS[2], 'retired_epoch')
end
local epoch = redis.call('HINCRBY', KEYS[2], 'epoch', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'epoch', epoch, 'expires', ARGV[3])
return {0, epoch}
"""
)

# KEYS: lease.  ARGV: epoch, owner, expires.  Returns 1 when renewed, else 0.
_LUA_RENEW = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'expires', ARGV[3])
return 1
"""

# KEYS: lease.  ARGV: epoch.
_LUA_RELEASE = """
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'expires', '0')
end
return 0
"""

# KEYS: events, meta, lease, cancel.  ARGV: before.  Returns -1 (no run), 0 (kept) or 1 (deleted).
# The meta hash stays behind holding only 'retired_epoch', the run id's last lease epoch:
# not 'epoch', so no lease issued before the prune passes APPEND's check or RENEW's, yet
# ACQUIRE numbers the next lease above it (fencing tokens never repeat for a run id).
_LUA_PRUNE = (
    _LUA_INT_CMP
    + """
local m = redis.call('HMGET', KEYS[2], 'flow_name', 'ended', 'epoch', 'retired_epoch')
if not m[1] then return -1 end
if not m[2] or int_cmp(m[2], ARGV[1]) >= 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local last = m[3] or m[4]
if last then redis.call('HSET', KEYS[2], 'retired_epoch', last) end
return 1
"""
)

# KEYS: cache list.  ARGV: entry, deadline_ms.  Keeps the key until its last entry
# expires (plus a grace for clock skew), judged by the server's clock; entries written
# with times that are not wall-clock times never make the key expire.
_LUA_CACHE_PUT = """
local len = redis.call('LPUSH', KEYS[1], ARGV[1])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = tonumber(ARGV[2])
if deadline <= now_ms then return len end
local ttl = redis.call('PTTL', KEYS[1])
if (ttl == -1 and len == 1) or (ttl >= 0 and deadline > now_ms + ttl) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return len
"""


@dataclass(frozen=True, slots=True)
class Script:
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


APPEND = Script.of(_LUA_APPEND)
ACQUIRE = Script.of(_LUA_ACQUIRE)
RENEW = Script.of(_LUA_RENEW)
RELEASE = Script.of(_LUA_RELEASE)
PRUNE = Script.of(_LUA_PRUNE)
CACHE_PUT = Script.of(_LUA_CACHE_PUT)
