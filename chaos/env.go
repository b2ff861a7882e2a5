package main

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/sandbox"
)

// pollEvery is how often the suite looks at Redis while it waits.
const pollEvery = 100 * time.Millisecond

// harness is what every scenario shares: the built commands, the scratch
// directory and the processes.
type harness struct {
	bin         string // directory holding enqueue, worker and sandbox
	dir         string // scratch directory: logs, inputs, outputs, Redis data
	redisURL    string // the shared Redis (db 13)
	redisServer string // redis-server binary, for the restart scenario
	runID       string // makes queue, campaign, key and profile names unique
	procs       *procSet
	log         *slog.Logger
}

// env is one scenario's world: its names, its Redis, its sandbox and its
// processes.
type env struct {
	h        *harness
	name     string
	dir      string
	queue    string
	campaign string
	apiKey   string // the key workers send; unique so limiter keys are too

	redisURL string
	rdb      *redis.Client
	insp     *asynq.Inspector
	store    *campaign.Store

	sandboxURL string
	csvPath    string
	outPath    string
	ids        []string
	procs      []*proc
}

func (h *harness) newEnv(ctx context.Context, name, redisURL string) (*env, error) {
	dir := filepath.Join(h.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	unique := "chaos-" + name + "-" + h.runID
	e := &env{
		h: h, name: name, dir: dir,
		queue: unique, campaign: unique, apiKey: "key-" + unique,
		csvPath: filepath.Join(dir, "profiles.csv"), outPath: filepath.Join(dir, "results.csv"),
	}
	if redisURL != "" {
		if err := e.openRedis(ctx, redisURL); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// openRedis points the scenario at a Redis and checks that it answers.
func (e *env) openRedis(ctx context.Context, url string) error {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return fmt.Errorf("redis url: %w", err)
	}
	opts.MaxRetries = 0 // the suite polls; a dead Redis should say so at once
	rdb := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return fmt.Errorf("redis at %s: %w", opts.Addr, err)
	}
	e.redisURL = url
	e.rdb = rdb
	e.insp = asynq.NewInspectorFromRedisClient(rdb)
	e.store = campaign.NewStore(rdb, time.Hour)
	return nil
}

// close stops the scenario's processes, removes its keys and closes its
// clients.
func (e *env) close(ctx context.Context) {
	for _, p := range e.procs {
		p.stop(5 * time.Second)
	}
	if e.rdb == nil {
		return
	}
	if e.redisURL == e.h.redisURL {
		if err := e.forgetKeys(ctx); err != nil {
			e.h.log.Warn("clean up redis keys", "scenario", e.name, "error", err)
		}
	}
	e.rdb.Close()
}

// forgetKeys deletes what the scenario left in the shared Redis: its
// queue, its campaign and its rate-limit keys; nothing else.
func (e *env) forgetKeys(ctx context.Context) error {
	sum := sha256.Sum256([]byte(e.apiKey))
	patterns := []string{
		"asynq:{" + e.queue + "}:*",
		"enrollq:c:{" + e.campaign + "}:*",
		"enrollq:rl:{" + hex.EncodeToString(sum[:8]) + ":*",
	}
	for _, pat := range patterns {
		iter := e.rdb.Scan(ctx, 0, pat, 500).Iterator()
		var batch []string
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return err
		}
		for len(batch) > 0 {
			n := min(len(batch), 500)
			if err := e.rdb.Unlink(ctx, batch[:n]...).Err(); err != nil {
				return err
			}
			batch = batch[n:]
		}
	}
	return e.rdb.SRem(ctx, "asynq:queues", e.queue).Err()
}

// logPath is where process name's output goes.
func (e *env) logPath(name string) string { return filepath.Join(e.dir, name+".log") }

func (e *env) start(ctx context.Context, s spec) (*proc, error) {
	if s.logPath == "" {
		s.logPath = e.logPath(s.name)
	}
	p, err := e.h.procs.start(ctx, s)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	e.h.log.Debug("started", "scenario", e.name, "process", s.name, "pid", p.pid())
	return p, nil
}

// writeCSV writes n profiles to the scenario's input file.
func (e *env) writeCSV(n int) error {
	f, err := os.OpenFile(e.csvPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"user_profile_id", "email"})
	tag := strings.ReplaceAll(e.name, "-", "")
	e.ids = make([]string, n)
	for i := range n {
		id := fmt.Sprintf("uprof_%s%s%05d", tag, e.h.runID, i)
		e.ids[i] = id
		w.Write([]string{id, fmt.Sprintf("p%d@example.com", i)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startSandbox starts the stand-in API on a free loopback port and waits
// for its "listening on" line.
func (e *env) startSandbox(ctx context.Context, args ...string) error {
	addr := make(chan string, 1)
	onStdout := func(line string) {
		if rest, ok := strings.CutPrefix(line, "listening on "); ok {
			select {
			case addr <- strings.TrimSpace(rest):
			default:
			}
		}
	}
	p, err := e.start(ctx, spec{
		name: "sandbox", bin: filepath.Join(e.h.bin, "sandbox"),
		args: append([]string{"--addr", "127.0.0.1:0"}, args...), onStdout: onStdout,
	})
	if err != nil {
		return err
	}
	select {
	case a := <-addr:
		if !strings.HasPrefix(a, "http://127.0.0.1:") {
			return fmt.Errorf("sandbox listens on %q, not on 127.0.0.1", a)
		}
		e.sandboxURL = a
		return nil
	case <-p.done:
		return fmt.Errorf("sandbox exited at start: %s\n%s", p.exitDesc(), p.tail(5))
	case <-time.After(10 * time.Second):
		return errors.New("sandbox printed no address within 10s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startWorker starts a worker on the scenario's queue with key as its API
// key.
func (e *env) startWorker(ctx context.Context, name, key string, args ...string) (*proc, error) {
	all := append([]string{"--redis-url", e.redisURL, "--queue", e.queue, "--log-level", "info"}, args...)
	p, err := e.start(ctx, spec{
		name: name, bin: filepath.Join(e.h.bin, "worker"), args: all,
		env: []string{"ANTHROPIC_BASE_URL=" + e.sandboxURL, "ANTHROPIC_API_KEY=" + key},
	})
	return p, err
}

// startEnqueue enqueues the scenario's input and follows the campaign to
// its end (--wait --out), in the background.
func (e *env) startEnqueue(ctx context.Context, name string) (*proc, error) {
	return e.start(ctx, spec{
		name: name, bin: filepath.Join(e.h.bin, "enqueue"),
		args: []string{"--redis-url", e.redisURL, "--queue", e.queue, "--campaign", e.campaign,
			"--csv", e.csvPath, "--wait", "--out", e.outPath, "--log-level", "info"},
		env: []string{"ANTHROPIC_BASE_URL=" + e.sandboxURL},
	})
}

// runEnqueue runs enqueue with args to its end and returns its exit error.
func (e *env) runEnqueue(ctx context.Context, name string, limit time.Duration, args ...string) error {
	p, err := e.start(ctx, spec{
		name: name, bin: filepath.Join(e.h.bin, "enqueue"),
		args: append([]string{"--redis-url", e.redisURL}, args...),
	})
	if err != nil {
		return err
	}
	if !p.wait(ctx, limit) {
		p.kill()
		return fmt.Errorf("%s did not end within %s", name, limit)
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s: %s: %s", name, p.waitErr, p.tail(3))
	}
	return nil
}

// waitUntil polls cond until it holds, for at most limit.
func waitUntil(ctx context.Context, what string, limit time.Duration, cond func(context.Context) (bool, error)) error {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var lastErr error
	for {
		ok, err := cond(ctx)
		if err == nil && ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			if lastErr != nil {
				return fmt.Errorf("%s: not within %s (last error: %v)", what, limit, lastErr)
			}
			return fmt.Errorf("%s: not within %s", what, limit)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// progress reads the campaign's counts from Redis.
func (e *env) progress(ctx context.Context) (campaign.Progress, error) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return e.store.Progress(pctx, e.campaign)
}

// waitDone waits until at least n profiles have a result.
func (e *env) waitDone(ctx context.Context, n int64, limit time.Duration) error {
	return waitUntil(ctx, fmt.Sprintf("%d profiles done", n), limit, func(ctx context.Context) (bool, error) {
		p, err := e.progress(ctx)
		return p.Done() >= n, err
	})
}

// sample is the campaign's progress at one moment.
type sample struct {
	at   time.Time
	done int64
}

// followToEnd polls progress until every profile of the input has a
// result, and returns the moments at which the count changed.
func (e *env) followToEnd(ctx context.Context, limit time.Duration) ([]sample, error) {
	var samples []sample
	total := int64(len(e.ids))
	err := waitUntil(ctx, "every profile done", limit, func(ctx context.Context) (bool, error) {
		p, err := e.progress(ctx)
		if err != nil {
			return false, err
		}
		if len(samples) == 0 || samples[len(samples)-1].done != p.Done() {
			samples = append(samples, sample{time.Now(), p.Done()})
		}
		return p.Done() >= total, nil
	})
	return samples, err
}

// waitExit waits for an enqueue --wait to end and says how it ended.
func waitExit(ctx context.Context, p *proc, limit time.Duration) error {
	if !p.wait(ctx, limit) {
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for %s: %w", p.name, ctx.Err())
		}
		return fmt.Errorf("%s still running after %s", p.name, limit)
	}
	return nil
}

// stats fetches the sandbox's counters.
func (e *env) stats(ctx context.Context) (sandbox.Stats, error) {
	return sandbox.FetchStats(ctx, e.sandboxURL)
}

// row is one line of the --out CSV.
type row struct {
	id        string
	status    string
	errType   string
	requestID string
	attempts  int
}

// readRows reads the --out CSV by column name.
func readRows(path string) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	col := map[string]int{}
	for i, name := range header {
		col[name] = i
	}
	for _, name := range []string{"user_profile_id", "status", "error_type", "request_id", "attempts"} {
		if _, ok := col[name]; !ok {
			return nil, fmt.Errorf("%s: no column %q in %v", path, name, header)
		}
	}
	var rows []row
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		n, _ := strconv.Atoi(rec[col["attempts"]])
		rows = append(rows, row{
			id: rec[col["user_profile_id"]], status: rec[col["status"]],
			errType: rec[col["error_type"]], requestID: rec[col["request_id"]], attempts: n,
		})
	}
}

// tally compares the rows with the input.
type tally struct {
	rows    int
	lost    int // input profiles without a row
	dups    int // rows beyond the first for a profile
	strays  int // rows for profiles not in the input
	created int
	failed  int
	byID    map[string]row
}

func (e *env) tally(rows []row) tally {
	t := tally{rows: len(rows), byID: make(map[string]row, len(rows))}
	want := make(map[string]bool, len(e.ids))
	for _, id := range e.ids {
		want[id] = true
	}
	for _, r := range rows {
		if !want[r.id] {
			t.strays++
			continue
		}
		if _, seen := t.byID[r.id]; seen {
			t.dups++
			continue
		}
		t.byID[r.id] = r
		switch r.status {
		case "created":
			t.created++
		case "failed":
			t.failed++
		}
	}
	t.lost = len(e.ids) - len(t.byID)
	return t
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRedis starts a private redis-server on port with an append-only
// file in dir, and waits until it answers.
func (e *env) startRedis(ctx context.Context, name string, port int, dir string) (*proc, error) {
	p, err := e.start(ctx, spec{
		name: name, bin: e.h.redisServer,
		args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--appendonly", "yes",
			"--dir", dir, "--save", "", "--maxmemory-policy", "noeviction"},
	})
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1})
	defer rdb.Close()
	err = waitUntil(ctx, name+" answers", 15*time.Second, func(ctx context.Context) (bool, error) {
		if !p.running() {
			return false, fmt.Errorf("exited: %s: %s", p.exitDesc(), p.tail(3))
		}
		return rdb.Ping(ctx).Err() == nil, nil
	})
	return p, err
}

// shutdownRedis stops a private redis-server the way an operator would
// (SIGTERM: it writes its append-only file and exits), and waits.
func shutdownRedis(p *proc) error {
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	if !p.wait(context.Background(), 15*time.Second) {
		return fmt.Errorf("%s did not exit within 15s of SIGTERM", p.name)
	}
	return nil
}
