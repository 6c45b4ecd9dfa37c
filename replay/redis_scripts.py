"""The Lua scripts of the Redis replay, and their Python twin ``segments``.

Each script runs atomically on the server. They are registered with ``register_script``, so
redis-py sends ``EVALSHA`` and reloads a script after a restart emptied the script cache
(``NOSCRIPT``). Key layout: see ``replay.redis_replay``.

Error replies a script can return (``replay.redis_store.script_error`` translates them):

| reply prefix     | meaning                                                            |
|------------------|--------------------------------------------------------------------|
| ``TANDEMNOINIT`` | the ``meta`` hash is gone (Redis lost the data, or a user deleted it) |
| ``TANDEMSCHEMA`` | the stored schema hash is not the writer's                          |
| ``TANDEMSTALE``  | this writer id sent an older sequence number than it already wrote  |
| ``TANDEMCORRUPT``| a data string has the wrong length                                  |
| ``TANDEMMETALOST``| ``meta`` is gone while the schema or data keys still exist         |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_CHUNK_BYTES = 64 << 20
"""Largest data string per field chunk (well under Redis' 512 MB string limit)."""

_SEGMENTS_LUA = """
local function segments(start, n, cap, R)
  local segs = {}
  local pos, off = start, 0
  while n > 0 do
    local slot = pos % cap
    local chunk = math.floor(slot / R)
    local inchunk = slot - chunk * R
    local k = math.min(n, R - inchunk, cap - slot)
    segs[#segs + 1] = {chunk, inchunk, off, k}
    pos = pos + k
    off = off + k
    n = n - k
  end
  return segs
end
"""

# KEYS: meta, writers. ARGV: schema_hash, writer, seq, n, capacity, chunk_rows, data prefix,
# nfields, then per field: name, itemsize, bytes. Every check runs before the first write.
INSERT_LUA = (
    _SEGMENTS_LUA
    + """
local meta = KEYS[1]
local m = redis.call('HMGET', meta, 'schema_hash', 'epoch')
if not m[1] then return redis.error_reply('TANDEMNOINIT buffer missing') end
if m[1] ~= ARGV[1] then return redis.error_reply('TANDEMSCHEMA ' .. m[1]) end
local last = redis.call('HGET', KEYS[2], ARGV[2])
local seq = tonumber(ARGV[3])
if last then
  local sep = string.find(last, ':', 1, true)
  local lseq = tonumber(string.sub(last, 1, sep - 1))
  if seq == lseq then return {tonumber(string.sub(last, sep + 1)), 1, m[2]} end
  if seq < lseq then return redis.error_reply('TANDEMSTALE ' .. lseq) end
end
local n, cap, R = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local prefix, nf = ARGV[7], tonumber(ARGV[8])
local start = tonumber(redis.call('HGET', meta, 'cursor'))
local segs = segments(start, n, cap, R)
for f = 0, nf - 1 do
  local name, isz, blob = ARGV[9 + 3 * f], tonumber(ARGV[10 + 3 * f]), ARGV[11 + 3 * f]
  if #blob ~= n * isz then
    return redis.error_reply('TANDEMCORRUPT field ' .. name .. ' sent ' .. #blob .. ' bytes for '
      .. n .. ' rows')
  end
  for _, s in ipairs(segs) do
    local key = prefix .. name .. ':' .. s[1]
    local want = math.min(R, cap - s[1] * R) * isz
    local have = redis.call('STRLEN', key)
    if have ~= want then
      return redis.error_reply('TANDEMCORRUPT ' .. key .. ' holds ' .. have .. ' bytes, expected ' .. want)
    end
  end
end
redis.call('HINCRBY', meta, 'cursor', n)
for f = 0, nf - 1 do
  local name, isz, blob = ARGV[9 + 3 * f], tonumber(ARGV[10 + 3 * f]), ARGV[11 + 3 * f]
  for _, s in ipairs(segs) do
    local bytes = blob
    if #segs > 1 then bytes = string.sub(blob, s[3] * isz + 1, (s[3] + s[4]) * isz) end
    redis.call('SETRANGE', prefix .. name .. ':' .. s[1], s[2] * isz, bytes)
  end
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3] .. ':' .. string.format('%d', start))
return {start, 0, m[2]}
"""
)

# KEYS: meta. ARGV: reader's epoch, seen, max_rows, capacity, chunk_rows, data prefix, nfields,
# then per field: name, itemsize. Returns {epoch, cursor, lo, hi, schema_hash, bytes...}: the
# rows [lo, hi), per field then per segment. Read-only and bounded by max_rows.
SYNC_LUA = (
    _SEGMENTS_LUA
    + """
local v = redis.call('HMGET', KEYS[1], 'epoch', 'cursor', 'schema_hash')
if not v[1] then return {'', 0, 0, 0, ''} end
local cur = tonumber(v[2])
local seen = tonumber(ARGV[2])
if v[1] ~= ARGV[1] then seen = 0 end
local cap, R = tonumber(ARGV[4]), tonumber(ARGV[5])
local lo = math.max(seen, cur - cap)
local hi = math.min(cur, lo + tonumber(ARGV[3]))
local out = {v[1], cur, lo, hi, v[3]}
if hi > lo then
  local segs = segments(lo, hi - lo, cap, R)
  local prefix, nf = ARGV[6], tonumber(ARGV[7])
  for f = 0, nf - 1 do
    local name, isz = ARGV[8 + 2 * f], tonumber(ARGV[9 + 2 * f])
    for _, s in ipairs(segs) do
      local key = prefix .. name .. ':' .. s[1]
      out[#out + 1] = redis.call('GETRANGE', key, s[2] * isz, (s[2] + s[4]) * isz - 1)
    end
  end
end
return out
"""
)

# KEYS: schema, meta, writers, chunk keys... ARGV: record, schema_hash, epoch, chunk lengths...
# Creates the buffer unless it exists; returns {created, stored record}. A buffer whose meta
# hash is gone while its schema or data keys remain is damaged, not absent: recreating it would
# silently wipe rows other processes wrote (issue 13), so that is an error.
CREATE_LUA = """
if redis.call('HEXISTS', KEYS[2], 'schema_hash') == 1 then
  return {0, redis.call('GET', KEYS[1])}
end
local stored = redis.call('GET', KEYS[1])
if stored and stored ~= ARGV[1] then return {0, stored} end
for i = 1, #KEYS do
  if i ~= 3 and redis.call('EXISTS', KEYS[i]) == 1 then
    return redis.error_reply('TANDEMMETALOST ' .. KEYS[i])
  end
end
redis.call('DEL', KEYS[3])
for i = 4, #KEYS do
  redis.call('SETRANGE', KEYS[i], tonumber(ARGV[i]) - 1, '\\0')
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'schema_hash', ARGV[2], 'epoch', ARGV[3], 'cursor', 0)
return {1, ARGV[1]}
"""


@dataclass(frozen=True)
class Scripts:
    """The three scripts, registered on one client (callables: ``script(keys=..., args=...)``)."""

    insert: Any
    sync: Any
    create: Any

    @classmethod
    def register(cls, client: Any) -> Scripts:
        return cls(
            insert=client.register_script(INSERT_LUA),
            sync=client.register_script(SYNC_LUA),
            create=client.register_script(CREATE_LUA),
        )


def segments(start: int, n: int, capacity: int, chunk_rows: int) -> list[tuple[int, int, int, int]]:
    """Split rows ``[start, start + n)`` into ``(chunk, row in chunk, offset in fragment, rows)``
    runs that do not cross a chunk edge or the wrap-around (the Lua ``segments``, in Python).

    Row ``p`` lives in slot ``p mod capacity``, i.e. chunk ``slot // chunk_rows`` at row
    ``slot mod chunk_rows``."""
    out = []
    pos, off = start, 0
    while n > 0:
        slot = pos % capacity
        chunk = slot // chunk_rows
        inchunk = slot - chunk * chunk_rows
        k = min(n, chunk_rows - inchunk, capacity - slot)
        out.append((chunk, inchunk, off, k))
        pos, off, n = pos + k, off + k, n - k
    return out
