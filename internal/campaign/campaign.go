// Package campaign keeps a campaign's shared state in Redis: which profiles
// belong to it, one result per profile, the counts that say how far it is,
// and the column order of its passthrough data.
//
// Every worker writes to the same Store, so any number of processes yield
// one consolidated set: results are keyed by (campaign, profile), a task
// that runs twice leaves one row, and a created result is never replaced by
// a failure.
//
// Keys live under "enrollq:c:{campaign}:" (the braces keep a campaign's keys
// in one Redis Cluster slot) and expire after Store.Retention of quiet. One
// of them names the queue the campaign's tasks go on (see ClaimQueue).
package campaign

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Status is a result's outcome.
type Status string

const (
	StatusCreated Status = "created"
	StatusFailed  Status = "failed"
)

// DefaultRetention is how long a campaign's keys live after its last write.
const DefaultRetention = 30 * 24 * time.Hour

// Result is one profile's outcome: the row an email service imports.
type Result struct {
	Campaign  string            `json:"campaign"`
	ProfileID string            `json:"user_profile_id"`
	Seq       int64             `json:"seq"` // position in the input, for output order
	Columns   map[string]string `json:"columns,omitempty"`

	// URL is a bearer secret. It is stored and exported, never logged.
	URL       string    `json:"enrollment_url,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`

	Status       Status    `json:"status"`
	ErrorType    string    `json:"error_type,omitempty"`
	ErrorMessage string    `json:"error_message,omitempty"`
	RequestID    string    `json:"request_id,omitempty"`
	Attempts     int64     `json:"attempts"`
	EnqueuedAt   time.Time `json:"enqueued_at,omitzero"`
	FinishedAt   time.Time `json:"finished_at"`
}

// Progress counts a campaign.
type Progress struct {
	Total   int64 // profiles enqueued into the campaign, over all runs
	Created int64
	Failed  int64
}

// Done is the number of profiles with a result.
func (p Progress) Done() int64 { return p.Created + p.Failed }

// Pending is the number of profiles still without a result.
func (p Progress) Pending() int64 { return max(p.Total-p.Done(), 0) }

// maxNameLen is the longest campaign name.
const maxNameLen = 128

// ValidateName checks a campaign name: letters, digits, '.', '_', '-', up
// to 128 characters, starting with a letter or digit. Every task checks
// its campaign's name, so it is a loop over bytes, not a regexp (a
// quarter of the cost).
func ValidateName(name string) error {
	ok := name != "" && len(name) <= maxNameLen && isAlnum(name[0])
	for i := 1; ok && i < len(name); i++ {
		c := name[i]
		ok = isAlnum(c) || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return fmt.Errorf("campaign name %q: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// Store is the campaign state in Redis. It is safe for concurrent use.
type Store struct {
	rdb       redis.UniversalClient
	retention time.Duration
}

// NewStore returns a Store over rdb. retention <= 0 means DefaultRetention.
func NewStore(rdb redis.UniversalClient, retention time.Duration) *Store {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Store{rdb: rdb, retention: retention}
}

func key(campaign, part string) string {
	return "enrollq:c:{" + campaign + "}:" + part
}

// putBody is the Lua that stores a result with its counts, shared by
// putScript and putCallScript. KEYS: results, status, counts, expiry,
// calls (putCallScript's), stashed results, stashed expiries (see
// Admit); ARGV: profile id, status, result JSON, retention seconds,
// expiry (Unix seconds, 0 for a failure), now (Unix seconds).
//
// A failure never replaces a live URL: a task that ran twice keeps the
// URL it got. It may replace an expired one, whose re-mint failed. A
// failure of a re-mint that Admit cleared the URL for brings that URL back
// while it lives. kept is 1 when the result was stored, 0 when a live URL
// outranked it. The live URL's result then counts the failed call in its
// attempts: a stored one takes the failure's attempts when they are more
// (they hold the earlier calls of a refresh or a second task), a stashed
// one adds them (a re-mint counts afresh). Only a failure reads the
// stash: a success, the hot path, costs no more for it.
const putBody = `
local kept = 1
local st, val, exp = ARGV[2], ARGV[3], ARGV[5]
local function withAttempts(live, add)
  local n, r = tonumber(cjson.decode(ARGV[3])['attempts']) or 0, cjson.decode(live)
  local had = tonumber(r['attempts']) or 0
  if add then
    n = had + n
  end
  if n <= had then
    return live
  end
  r['attempts'] = n
  return cjson.encode(r)
end
local old = redis.call('HGET', KEYS[2], ARGV[1])
if st ~= 'created' then
  if old == 'created' then
    if tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0') > tonumber(ARGV[6]) then
      kept = 0
      local live = redis.call('HGET', KEYS[1], ARGV[1])
      if live then
        redis.call('HSET', KEYS[1], ARGV[1], withAttempts(live, false))
      end
    end
  else
    local sexp = tonumber(redis.call('HGET', KEYS[7], ARGV[1]) or '0')
    local prev = sexp > tonumber(ARGV[6]) and redis.call('HGET', KEYS[6], ARGV[1])
    if prev then
      st, val, exp, kept = 'created', withAttempts(prev, true), sexp, 2
    end
  end
end
if kept ~= 0 then
  redis.call('HSET', KEYS[1], ARGV[1], val)
  redis.call('HSET', KEYS[2], ARGV[1], st)
  if st == 'created' then
    redis.call('HSET', KEYS[4], ARGV[1], exp)
  else
    redis.call('HDEL', KEYS[4], ARGV[1])
  end
  if old ~= st then
    redis.call('HINCRBY', KEYS[3], st, 1)
    if old then
      redis.call('HINCRBY', KEYS[3], old, -1)
    end
  end
  for i = 1, 4 do
    redis.call('EXPIRE', KEYS[i], ARGV[4])
  end
end
if kept == 2 then
  redis.call('HDEL', KEYS[6], ARGV[1])
  redis.call('HDEL', KEYS[7], ARGV[1])
  kept = 0
end
`

// putScript stores a result (see putBody) and returns kept.
var putScript = redis.NewScript(putBody + "return kept\n")

// putCallScript counts one API call and stores the result it produced
// (see putBody). KEYS and ARGV: those of putBody. When the profile had
// calls counted before, it counts this one and stores nothing: the
// result's attempts are one short. It returns {kept, calls}.
var putCallScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
redis.call('EXPIRE', KEYS[5], ARGV[4])
if n ~= 1 then
  return {0, n}
end
` + putBody + "return {kept, n}\n")

// Put records r. It reports false when r was a failure that a stored
// live URL outranks.
func (s *Store) Put(ctx context.Context, r Result) (bool, error) {
	keys, args, err := s.putArgs(r)
	if err != nil {
		return false, err
	}
	n, err := putScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return false, fmt.Errorf("put result for %s: %w", r.ProfileID, err)
	}
	return n == 1, nil
}

// PutCall counts the API call that produced r and records r: the path of
// a task's first run, which skips BeginCall. r.Attempts counts that call
// as the profile's first (PriorAttempts + 1). It is one round trip, unless
// the profile had calls counted before (the task waited out a 429, or ran
// twice): then Attempts is raised by them and r is put in a second one. It
// returns Put's kept and the calls counted, this one included.
func (s *Store) PutCall(ctx context.Context, r Result) (kept bool, calls int64, err error) {
	keys, args, err := s.putArgs(r)
	if err != nil {
		return false, 0, err
	}
	v, err := putCallScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
	if err == nil && len(v) != 2 {
		err = fmt.Errorf("unexpected reply %v", v)
	}
	if err != nil {
		return false, 0, fmt.Errorf("put result for %s: %w", r.ProfileID, err)
	}
	if calls = v[1]; calls == 1 {
		return v[0] == 1, calls, nil
	}
	r.Attempts += calls - 1
	kept, err = s.Put(ctx, r)
	return kept, calls, err
}

// putArgs are the keys and arguments of putBody for r.
func (s *Store) putArgs(r Result) ([]string, []any, error) {
	if r.Status != StatusCreated && r.Status != StatusFailed {
		return nil, nil, fmt.Errorf("put result for %s: unknown status %q", r.ProfileID, r.Status)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return nil, nil, fmt.Errorf("put result for %s: %w", r.ProfileID, err)
	}
	var expiry int64
	if r.Status == StatusCreated {
		expiry = r.ExpiresAt.Unix()
	}
	// One literal, not stashKeys appended: this is every task's path.
	keys := []string{key(r.Campaign, "results"), key(r.Campaign, "status"), key(r.Campaign, "counts"),
		key(r.Campaign, "expiry"), key(r.Campaign, "calls"), key(r.Campaign, "stash"), key(r.Campaign, "stashexp")}
	args := []any{r.ProfileID, string(r.Status), data, int64(s.retention.Seconds()), expiry, time.Now().Unix()}
	return keys, args, nil
}

// GetMany returns the results of ids, in order; a profile without a result
// has ok false.
func (s *Store) GetMany(ctx context.Context, campaign string, ids []string) ([]Result, []bool, error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	vals, err := s.rdb.HMGet(ctx, key(campaign, "results"), ids...).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("read %d results of %s: %w", len(ids), campaign, err)
	}
	out := make([]Result, len(ids))
	ok := make([]bool, len(ids))
	for i, v := range vals {
		str, isStr := v.(string)
		if !isStr {
			continue
		}
		if err := json.Unmarshal([]byte(str), &out[i]); err != nil {
			return nil, nil, fmt.Errorf("decode result of %s: %w", ids[i], err)
		}
		ok[i] = true
	}
	return out, ok, nil
}

// hget reads a hash field of the campaign, "" when it is missing.
func (s *Store) hget(ctx context.Context, campaign, part, field string) (string, error) {
	v, err := s.rdb.HGet(ctx, key(campaign, part), field).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}

// Status returns a profile's stored status, or "" when it has none.
func (s *Store) Status(ctx context.Context, campaign, profileID string) (Status, error) {
	v, err := s.hget(ctx, campaign, "status", profileID)
	if err != nil {
		return "", fmt.Errorf("read status of %s: %w", profileID, err)
	}
	return Status(v), nil
}

// Get returns a profile's result, and false when it has none.
func (s *Store) Get(ctx context.Context, campaign, profileID string) (Result, bool, error) {
	v, err := s.rdb.HGet(ctx, key(campaign, "results"), profileID).Bytes()
	if errors.Is(err, redis.Nil) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, fmt.Errorf("read result of %s: %w", profileID, err)
	}
	var r Result
	if err := json.Unmarshal(v, &r); err != nil {
		return Result{}, false, fmt.Errorf("decode result of %s: %w", profileID, err)
	}
	return r, true, nil
}

// beginScript counts one more API call for a profile, unless a result is
// stored already that the call would not replace. KEYS: status, calls,
// expiry; ARGV: profile id, retention seconds, stale-before (Unix seconds,
// 0 for none): a created result whose URL expires by then is replaced.
// It returns the stored status (” when the call goes ahead) and the
// calls so far.
var beginScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], ARGV[1])
if st then
  local stale = false
  if st == 'created' and tonumber(ARGV[3]) > 0 then
    stale = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0') <= tonumber(ARGV[3])
  end
  if not stale then
    return {st, tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')}
  end
end
local n = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {'', n}
`)

// BeginCall is asked right before an API call: when the profile has no
// result yet, it counts the call and returns the total so far, which
// bounds every kind of retry, rate-limit waits included. When a result is
// stored (a task that ran again after a crash), it returns that status
// and counts nothing. One round trip, on the path of every task that runs
// again; a first run skips it and counts its call with PutCall or
// CountCall once it has the answer.
//
// A refresh passes staleBefore: a stored URL that expires by then does
// not stop the call (it returns status "" and counts it), so that a new
// URL replaces it; a newer one, such as a refresh that already ran, does.
// Zero staleBefore means any stored result stops the call.
func (s *Store) BeginCall(ctx context.Context, campaign, profileID string, staleBefore time.Time) (Status, int64, error) {
	keys := []string{key(campaign, "status"), key(campaign, "calls"), key(campaign, "expiry")}
	var before int64
	if !staleBefore.IsZero() {
		before = staleBefore.Unix()
	}
	v, err := beginScript.Run(ctx, s.rdb, keys, profileID, int64(s.retention.Seconds()), before).Slice()
	if err == nil && len(v) != 2 {
		err = fmt.Errorf("unexpected reply %v", v)
	}
	if err != nil {
		return "", 0, fmt.Errorf("count call for %s: %w", profileID, err)
	}
	st, _ := v[0].(string)
	n, _ := v[1].(int64)
	return Status(st), n, nil
}

// CountCall counts one API call for a profile and returns the calls so
// far: the first run of a task, which skips BeginCall, counts with it a
// call that did not produce a result (a 429, a fault to retry).
func (s *Store) CountCall(ctx context.Context, campaign, profileID string) (int64, error) {
	return s.incr(ctx, key(campaign, "calls"), profileID, "call")
}

// CountPause notes that a profile's call paused the queue and returns how
// often it has. A profile that keeps pausing the queue after resumes is
// refused for itself, not for the account.
func (s *Store) CountPause(ctx context.Context, campaign, profileID string) (int64, error) {
	return s.incr(ctx, key(campaign, "pauses"), profileID, "pause")
}

// CountMalformed notes that a profile's call got an unusable 200 and
// returns how many it has had. Its budget is apart from that of transient
// faults: two 500s before a malformed answer do not use it up.
func (s *Store) CountMalformed(ctx context.Context, campaign, profileID string) (int64, error) {
	return s.incr(ctx, key(campaign, "malformed"), profileID, "malformed answer")
}

// incr adds one to a profile's counter in the hash k.
func (s *Store) incr(ctx context.Context, k, profileID, what string) (int64, error) {
	pipe := s.rdb.TxPipeline()
	n := pipe.HIncrBy(ctx, k, profileID, 1)
	pipe.Expire(ctx, k, s.retention)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("count %s for %s: %w", what, profileID, err)
	}
	return n.Val(), nil
}

// NoteRequest keeps the request id of a profile's latest call that
// brought no result, so that a failure recorded later without a call of
// its own (the campaign's deadline passed) can name it. Only calls that
// failed are noted: a success stores its request id with its result.
func (s *Store) NoteRequest(ctx context.Context, campaign, profileID, requestID string) error {
	if requestID == "" {
		return nil
	}
	k := key(campaign, "lastreq")
	pipe := s.rdb.Pipeline()
	pipe.HSet(ctx, k, profileID, requestID)
	pipe.Expire(ctx, k, s.retention)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("note request id for %s: %w", profileID, err)
	}
	return nil
}

// LastRequest returns the request id NoteRequest kept, or "".
func (s *Store) LastRequest(ctx context.Context, campaign, profileID string) (string, error) {
	v, err := s.hget(ctx, campaign, "lastreq", profileID)
	if err != nil {
		return "", fmt.Errorf("read last request id of %s: %w", profileID, err)
	}
	return v, nil
}

// Calls returns how many API calls were counted for a profile.
func (s *Store) Calls(ctx context.Context, campaign, profileID string) (int64, error) {
	n, err := s.rdb.HGet(ctx, key(campaign, "calls"), profileID).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

// Admission is what Admit found for one profile.
type Admission int

const (
	// Admitted: new to the campaign; the caller enqueues a task.
	Admitted Admission = iota
	// HasResult: the profile already has a result in this campaign: a
	// failure, or a URL that stays valid past RemintBefore.
	HasResult
	// Remint: the profile's URL expires within RemintBefore (or has
	// expired); its result was cleared so that a new task mints a fresh
	// one. The URL is kept aside: if the new call fails while it still
	// lives, it is the profile's result again, not the failure.
	Remint
	// Rejoined: admitted by an earlier run and still without a result;
	// the caller enqueues a task, which meets the earlier one if that is
	// still queued.
	Rejoined
)

// RemintBefore is how much validity a stored URL must have left for a
// re-run to keep it: a link with less is not worth mailing.
const RemintBefore = 10 * time.Minute

// Admit adds profile ids to the campaign and reports, for each, whether it
// already holds a result. It is one round trip for the batch, plus one for
// each URL it clears to be minted again.
func (s *Store) Admit(ctx context.Context, campaign string, ids []string) ([]Admission, error) {
	pipe := s.rdb.Pipeline()
	members := key(campaign, "profiles")
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	known := pipe.SMIsMember(ctx, members, args...)
	pipe.SAdd(ctx, members, args...)
	pipe.Expire(ctx, members, s.retention)
	status := pipe.HMGet(ctx, key(campaign, "status"), ids...)
	expiry := pipe.HMGet(ctx, key(campaign, "expiry"), ids...)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("admit %d profiles to %s: %w", len(ids), campaign, err)
	}
	out := make([]Admission, len(ids))
	cutoff := time.Now().Add(RemintBefore).Unix()
	for i, v := range status.Val() {
		if v == nil {
			if known.Val()[i] {
				out[i] = Rejoined
			}
			continue
		}
		out[i] = HasResult
		if v != string(StatusCreated) {
			continue
		}
		if exp, _ := expiry.Val()[i].(string); parseInt(exp) > cutoff {
			continue
		}
		if err := s.remint(ctx, campaign, ids[i]); err != nil {
			return nil, err
		}
		out[i] = Remint
	}
	return out, nil
}

// unremintScript undoes remintScript for a profile that got no task:
// while it has no result, its stashed result (created, with its expiry)
// is its result again. KEYS: results, status, counts, expiry, stashed
// results, stashed expiries; ARGV: profile id, retention seconds.
var unremintScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 0
end
local val = redis.call('HGET', KEYS[5], ARGV[1])
local exp = redis.call('HGET', KEYS[6], ARGV[1])
if not (val and exp) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], val)
redis.call('HSET', KEYS[2], ARGV[1], 'created')
redis.call('HSET', KEYS[4], ARGV[1], exp)
redis.call('HINCRBY', KEYS[3], 'created', 1)
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
for i = 1, 4 do
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return 1
`)

// Unadmit undoes Admit for profiles that got no task because the run
// stopped first (an error, Ctrl-C), so that the campaign counts no profile
// that nothing will ever run: ids admitted new leave the campaign, and
// ids cleared to be minted again get their result back. Profiles admitted
// before (Rejoined) are not passed: an earlier task may be theirs.
func (s *Store) Unadmit(ctx context.Context, campaign string, added, reminted []string) error {
	if len(added) > 0 {
		args := make([]any, len(added))
		for i, id := range added {
			args[i] = id
		}
		if err := s.rdb.SRem(ctx, key(campaign, "profiles"), args...).Err(); err != nil {
			return fmt.Errorf("take %d profiles out of %s: %w", len(added), campaign, err)
		}
	}
	keys := []string{key(campaign, "results"), key(campaign, "status"), key(campaign, "counts"),
		key(campaign, "expiry")}
	keys = append(keys, stashKeys(campaign)...)
	for _, id := range reminted {
		if err := unremintScript.Run(ctx, s.rdb, keys, id, int64(s.retention.Seconds())).Err(); err != nil {
			return fmt.Errorf("give %s in %s its URL back: %w", id, campaign, err)
		}
	}
	return nil
}

func parseInt(s string) int64 {
	var n int64
	fmt.Sscan(s, &n)
	return n
}

// Progress returns the campaign's counts.
func (s *Store) Progress(ctx context.Context, campaign string) (Progress, error) {
	pipe := s.rdb.Pipeline()
	total := pipe.SCard(ctx, key(campaign, "profiles"))
	counts := pipe.HMGet(ctx, key(campaign, "counts"), string(StatusCreated), string(StatusFailed))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Progress{}, fmt.Errorf("read progress of %s: %w", campaign, err)
	}
	p := Progress{Total: total.Val()}
	vals := counts.Val()
	c, _ := vals[0].(string)
	f, _ := vals[1].(string)
	p.Created, p.Failed = parseInt(c), parseInt(f)
	return p, nil
}

// setColumnsAttempts bounds SetColumns' optimistic transaction: each
// round that fails lost to another writer's merge, so a few processes
// enqueueing one campaign at once all get through.
const setColumnsAttempts = 10

// SetColumns merges passthrough column names into the campaign's column
// order: known names keep their place, new ones are appended. It returns
// the merged order. A concurrent merge makes it read and merge again, up to
// setColumnsAttempts times.
func (s *Store) SetColumns(ctx context.Context, campaign string, cols []string) ([]string, error) {
	var err error
	for range setColumnsAttempts {
		var merged []string
		merged, err = s.setColumns(ctx, campaign, cols)
		if !errors.Is(err, redis.TxFailedErr) {
			return merged, err
		}
	}
	return nil, fmt.Errorf("%w (after %d tries: other processes kept changing them)", err, setColumnsAttempts)
}

func (s *Store) setColumns(ctx context.Context, campaign string, cols []string) ([]string, error) {
	k := key(campaign, "meta")
	var merged []string
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		old, err := tx.HGet(ctx, k, "columns").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		merged = nil
		if old != "" {
			if err := json.Unmarshal([]byte(old), &merged); err != nil {
				return fmt.Errorf("decode stored columns: %w", err)
			}
		}
		for _, c := range cols {
			if !slices.Contains(merged, c) {
				merged = append(merged, c)
			}
		}
		data, _ := json.Marshal(merged)
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, k, "columns", data)
			p.HSetNX(ctx, k, "created_at", time.Now().UTC().Format(time.RFC3339))
			p.Expire(ctx, k, s.retention)
			p.ZAdd(ctx, campaignsKey, redis.Z{Score: float64(time.Now().Unix()), Member: campaign})
			return nil
		})
		return err
	}, k)
	if err != nil {
		return nil, fmt.Errorf("store columns of %s: %w", campaign, err)
	}
	return merged, nil
}

// claimQueueScript records the queue a campaign's tasks go on. KEYS:
// queue, profiles; ARGV: queue, retention seconds. A campaign on another
// queue keeps it, unless it has no profile yet (a run whose rows were all
// invalid). It returns the campaign's queue: ARGV[1], or the other one.
var claimQueueScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] and redis.call('SCARD', KEYS[2]) > 0 then
  return cur
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
`)

// ClaimQueue records that the campaign's tasks go on queue, for the
// commands that act on the campaign later (a refresh, a retry of its
// failures, its status) and do not know it. A campaign lives on one queue:
// when it is on another one already, ClaimQueue changes nothing and
// returns a *QueueConflictError. Each claim restarts the record's
// retention.
func (s *Store) ClaimQueue(ctx context.Context, campaign, queue string) error {
	on, err := claimQueueScript.Run(ctx, s.rdb, []string{key(campaign, "queue"), key(campaign, "profiles")},
		queue, int64(s.retention.Seconds())).Text()
	if err != nil {
		return fmt.Errorf("record queue of %s: %w", campaign, err)
	}
	if on != queue {
		return &QueueConflictError{Campaign: campaign, Queue: on, Other: queue}
	}
	return nil
}

// Queue returns the queue the campaign's tasks go on, or "" for a
// campaign enqueued before the store kept it.
func (s *Store) Queue(ctx context.Context, campaign string) (string, error) {
	q, err := s.rdb.Get(ctx, key(campaign, "queue")).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read queue of %s: %w", campaign, err)
	}
	return q, nil
}

// QueueConflictError refuses to put a campaign's tasks on a second queue:
// the workers that serve its queue would never see them, and a task id
// (campaign and profile) is unique only within one queue.
type QueueConflictError struct {
	Campaign string
	Queue    string // the queue the campaign is on
	Other    string // the queue that was refused
}

func (e *QueueConflictError) Error() string {
	return fmt.Sprintf("campaign %s is on queue %q, not %q: a campaign's tasks live on one queue", e.Campaign, e.Queue, e.Other)
}

// campaignsKey indexes campaigns by their last enqueue, for the UI and
// metrics.
const campaignsKey = "enrollq:campaigns"

// Campaigns returns up to n campaign names, the most recently enqueued
// first, leaving out those whose keys have expired.
func (s *Store) Campaigns(ctx context.Context, n int64) ([]string, error) {
	names, err := s.rdb.ZRevRange(ctx, campaignsKey, 0, n-1).Result()
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	var live []string
	for _, name := range names {
		if s.rdb.Exists(ctx, key(name, "meta")).Val() == 1 {
			live = append(live, name)
		} else {
			s.rdb.ZRem(ctx, campaignsKey, name)
		}
	}
	return live, nil
}

// Columns returns the campaign's passthrough column order.
func (s *Store) Columns(ctx context.Context, campaign string) ([]string, error) {
	v, err := s.rdb.HGet(ctx, key(campaign, "meta"), "columns").Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", campaign, err)
	}
	var cols []string
	if err := json.Unmarshal([]byte(v), &cols); err != nil {
		return nil, fmt.Errorf("decode columns of %s: %w", campaign, err)
	}
	return cols, nil
}

// Results returns every stored result of a campaign, in input order. It
// holds them all; EachResult streams them.
func (s *Store) Results(ctx context.Context, campaign string) ([]Result, error) {
	var out []Result
	err := s.EachResult(ctx, campaign, func(r Result) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// eachBatch is how many results EachResult reads in one round trip.
const eachBatch = 1000

// EachResult calls fn with every stored result of a campaign, in input
// order (by Seq, then profile id), and stops at fn's first error. It holds
// only each profile's position and id (some 50 bytes a profile, where a
// whole result takes about a kilobyte once decoded) and one batch of
// results: a first pass over the results learns the order, a second reads
// them in it, a batch at a time. A result stored between the passes is
// read as it is then; one forgotten in between is skipped.
func (s *Store) EachResult(ctx context.Context, campaign string, fn func(Result) error) error {
	results := key(campaign, "results")
	n, err := s.rdb.HLen(ctx, results).Result()
	if err != nil {
		return fmt.Errorf("read results of %s: %w", campaign, err)
	}
	// The ids go end to end in one buffer: no pointer for the garbage
	// collector to follow per profile.
	type place struct {
		seq      int64
		from, to int
	}
	order := make([]place, 0, n)
	ids := make([]byte, 0, n*32)
	iter := s.rdb.HScan(ctx, results, 0, "", eachBatch).Iterator()
	for iter.Next(ctx) {
		field := iter.Val()
		if !iter.Next(ctx) {
			break
		}
		var r struct {
			Seq int64 `json:"seq"`
		}
		if err := json.Unmarshal([]byte(iter.Val()), &r); err != nil {
			return fmt.Errorf("decode result of %s: %w", field, err)
		}
		order = append(order, place{r.Seq, len(ids), len(ids) + len(field)})
		ids = append(ids, field...)
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("read results of %s: %w", campaign, err)
	}
	id := func(p place) []byte { return ids[p.from:p.to] }
	// HSCAN may return a field twice (the hash grew during the scan):
	// each profile is one row.
	slices.SortFunc(order, func(a, b place) int { return bytes.Compare(id(a), id(b)) })
	order = slices.CompactFunc(order, func(a, b place) bool { return bytes.Equal(id(a), id(b)) })
	slices.SortStableFunc(order, func(a, b place) int { return cmp.Compare(a.seq, b.seq) })

	batchIDs := make([]string, 0, eachBatch)
	for batch := range slices.Chunk(order, eachBatch) {
		batchIDs = batchIDs[:0]
		for _, p := range batch {
			batchIDs = append(batchIDs, string(id(p)))
		}
		got, ok, err := s.GetMany(ctx, campaign, batchIDs)
		if err != nil {
			return err
		}
		for i, r := range got {
			if !ok[i] {
				continue
			}
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// forgetBody removes one profile's result, status, call and malformed
// counts and last request id and takes it off the counts, atomically.
// KEYS: results, status, counts, calls, expiry, malformed, last requests;
// ARGV: profile id.
const forgetBody = `
local old = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
if old then
  redis.call('HINCRBY', KEYS[3], old, -1)
end
return 1
`

var forgetScript = redis.NewScript(forgetBody)

// remintScript stashes a created result, then forgets it (forgetBody),
// so that the profile runs again while a failure of that run can bring
// the URL back (see putBody). KEYS: those of forgetBody, then stashed
// results, stashed expiries; ARGV: profile id, retention seconds.
var remintScript = redis.NewScript(`
local val = redis.call('HGET', KEYS[1], ARGV[1])
local exp = redis.call('HGET', KEYS[5], ARGV[1])
if val and exp then
  redis.call('HSET', KEYS[8], ARGV[1], val)
  redis.call('HSET', KEYS[9], ARGV[1], exp)
  redis.call('EXPIRE', KEYS[8], ARGV[2])
  redis.call('EXPIRE', KEYS[9], ARGV[2])
end
` + forgetBody)

// stashKeys are the hashes that keep a re-minted profile's result and
// expiry aside (see remint and putBody).
func stashKeys(campaign string) []string {
	return []string{key(campaign, "stash"), key(campaign, "stashexp")}
}

func forgetKeys(campaign string) []string {
	return []string{key(campaign, "results"), key(campaign, "status"), key(campaign, "counts"),
		key(campaign, "calls"), key(campaign, "expiry"), key(campaign, "malformed"), key(campaign, "lastreq")}
}

// Forget removes profiles' results and call counts so that they can run
// again on purpose (a re-run of failures).
func (s *Store) Forget(ctx context.Context, campaign string, ids ...string) error {
	keys := forgetKeys(campaign)
	for _, id := range ids {
		if err := forgetScript.Run(ctx, s.rdb, keys, id).Err(); err != nil {
			return fmt.Errorf("forget %s in %s: %w", id, campaign, err)
		}
	}
	return nil
}

// remint forgets a profile's created result as Forget does, and keeps its
// URL aside: a failure of the new call brings it back while it lives.
func (s *Store) remint(ctx context.Context, campaign, id string) error {
	keys := append(forgetKeys(campaign), stashKeys(campaign)...)
	if err := remintScript.Run(ctx, s.rdb, keys, id, int64(s.retention.Seconds())).Err(); err != nil {
		return fmt.Errorf("clear %s in %s to mint it again: %w", id, campaign, err)
	}
	return nil
}

// Unfinished returns the ids of the campaign's profiles that have no
// result yet, sorted.
func (s *Store) Unfinished(ctx context.Context, campaign string) ([]string, error) {
	var out []string
	batch := make([]string, 0, 1000)
	check := func() error {
		if len(batch) == 0 {
			return nil
		}
		st, err := s.rdb.HMGet(ctx, key(campaign, "status"), batch...).Result()
		if err != nil {
			return err
		}
		for i, v := range st {
			if v == nil {
				out = append(out, batch[i])
			}
		}
		batch = batch[:0]
		return nil
	}
	iter := s.rdb.SScan(ctx, key(campaign, "profiles"), 0, "", 1000).Iterator()
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == cap(batch) {
			if err := check(); err != nil {
				return nil, fmt.Errorf("read unfinished profiles of %s: %w", campaign, err)
			}
		}
	}
	err := iter.Err()
	if err == nil {
		err = check()
	}
	if err != nil {
		return nil, fmt.Errorf("read unfinished profiles of %s: %w", campaign, err)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
