package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/enrollq/enrollq/internal/sandbox"
)

// scenario is one way of breaking the fleet, and its criterion.
type scenario struct {
	name  string
	limit time.Duration // past it the scenario is a FAIL
	run   func(ctx context.Context, e *env, r *result) error
}

// scenarios run in this order, one after the other (the machine has two
// cores).
var scenarios = []scenario{
	{"kill9", 4 * time.Minute, kill9},
	{"wrong-key", 2 * time.Minute, wrongKey},
	{"fail400", 90 * time.Second, fail400},
	{"sigterm", 2 * time.Minute, sigterm},
	{"redis-restart", 3 * time.Minute, redisRestart},
	{"faults", 4 * time.Minute, faults},
}

func scenarioNames() []string {
	names := make([]string, len(scenarios))
	for i, sc := range scenarios {
		names[i] = sc.name
	}
	return names
}

// maxRetry is the product's default retry budget for transient faults
// (enqueue --max-retry): a profile may fail of them only after
// maxRetry+1 counted failures.
const maxRetry = 8

// account reads the --out CSV and the sandbox's counters into r.
func (e *env) account(ctx context.Context, r *result) (tally, sandbox.Stats, error) {
	rows, err := readRows(e.outPath)
	if err != nil {
		return tally{}, sandbox.Stats{}, fmt.Errorf("read results: %w", err)
	}
	t := e.tally(rows)
	r.lost, r.dups = t.lost, t.dups+t.strays
	if t.strays > 0 {
		r.detail = append(r.detail, fmt.Sprintf("%d rows for profiles not in the input", t.strays))
	}
	st, err := e.stats(ctx)
	if err != nil {
		return t, st, err
	}
	r.extraCalls = st.Requests - int64(len(e.ids))
	r.callsKnown = true
	return t, st, nil
}

// accountFromStore fills the lost count from the results in Redis, for a
// scenario that ended before enqueue wrote its CSV.
func (e *env) accountFromStore(ctx context.Context, r *result) {
	if e.store == nil || len(e.ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	results, err := e.store.Results(ctx, e.campaign)
	if err != nil {
		return
	}
	rows := make([]row, len(results))
	for i, res := range results {
		rows[i] = row{id: res.ProfileID, status: string(res.Status), errType: res.ErrorType}
	}
	t := e.tally(rows)
	r.lost = t.lost
	r.detail = append(r.detail, fmt.Sprintf("no CSV: counted from Redis (%d created, %d failed)", t.created, t.failed))
	if st, err := e.stats(ctx); err == nil {
		r.extraCalls = st.Requests - int64(len(e.ids))
		r.callsKnown = true
	}
}

// useRedis points the scenario at another Redis.
func (e *env) useRedis(ctx context.Context, url string) error {
	if e.rdb != nil {
		e.rdb.Close()
		e.rdb = nil
	}
	return e.openRedis(ctx, url)
}

func (e *env) startWorkers(ctx context.Context, n int, args ...string) ([]*proc, error) {
	var ws []*proc
	for i := range n {
		w, err := e.startWorker(ctx, fmt.Sprintf("worker%d", i+1), e.apiKey, args...)
		if err != nil {
			return nil, err
		}
		ws = append(ws, w)
	}
	return ws, nil
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// kill9: a worker dies with tasks in flight; asynq gives them to another
// worker once their lease has expired.
func kill9(ctx context.Context, e *env, r *result) error {
	const n, concurrency = 3000, 10
	r.profiles = n
	if err := e.writeCSV(n); err != nil {
		return err
	}
	if err := e.startSandbox(ctx, "--latency", "100ms"); err != nil {
		return err
	}
	workers, err := e.startWorkers(ctx, 2, "--concurrency", fmt.Sprint(concurrency), "--rate", "0")
	if err != nil {
		return err
	}
	enq, err := e.startEnqueue(ctx, "enqueue")
	if err != nil {
		return err
	}

	if err := e.waitDone(ctx, n/3, time.Minute); err != nil {
		return err
	}
	victim := workers[0]
	victim.kill()
	killedAt := time.Now()
	if !victim.wait(ctx, 5*time.Second) {
		return fmt.Errorf("worker1 (pid %d) still alive after SIGKILL", victim.pid())
	}
	atKill, _ := e.progress(ctx)
	if _, err := e.startWorker(ctx, "worker3", e.apiKey, "--concurrency", fmt.Sprint(concurrency), "--rate", "0"); err != nil {
		return err
	}

	samples, err := e.followToEnd(ctx, 3*time.Minute)
	if err != nil {
		return err
	}
	doneAt := samples[len(samples)-1].at
	gap, plateau := longestGap(samples, killedAt)
	if err := waitExit(ctx, enq, 30*time.Second); err != nil {
		return err
	}
	t, st, err := e.account(ctx, r)
	if err != nil {
		return err
	}

	limit := int64(n + concurrency)
	r.detail = append(r.detail,
		fmt.Sprintf("killed worker1 at %d done", atKill.Done()),
		fmt.Sprintf("%d profiles waited %s for the lease recoverer; all done %s after the kill",
			int64(n)-plateau.done, secs(gap), secs(doneAt.Sub(killedAt))),
		fmt.Sprintf("calls %d (limit %d)", st.Requests, limit),
		"enqueue "+enq.exitDesc())
	r.pass = t.lost == 0 && r.dups == 0 && t.created == n && st.Requests <= limit && enq.exitCode() == 0
	return nil
}

// longestGap finds the longest spell without progress after since, and the
// sample it started from.
func longestGap(samples []sample, since time.Time) (time.Duration, sample) {
	var gap time.Duration
	var from sample
	for i := 1; i < len(samples); i++ {
		if samples[i].at.Before(since) {
			continue
		}
		start := samples[i-1]
		if start.at.Before(since) {
			start.at = since
		}
		if d := samples[i].at.Sub(start.at); d > gap {
			gap, from = d, samples[i-1]
		}
	}
	return gap, from
}

// wrongKey: the worker's key is refused; the queue must pause at once and
// keep every task, and a resume with the right key must finish the job.
func wrongKey(ctx context.Context, e *env, r *result) error {
	const n, concurrency = 200, 10
	r.profiles = n
	right := "right-" + e.apiKey
	if err := e.writeCSV(n); err != nil {
		return err
	}
	if err := e.startSandbox(ctx, "--keys", right, "--latency", "200ms"); err != nil {
		return err
	}
	wrong, err := e.startWorker(ctx, "worker-wrong-key", "wrong-key", "--concurrency", fmt.Sprint(concurrency), "--rate", "0")
	if err != nil {
		return err
	}
	start := time.Now()
	enq, err := e.startEnqueue(ctx, "enqueue")
	if err != nil {
		return err
	}

	err = waitUntil(ctx, "queue paused", 30*time.Second, func(context.Context) (bool, error) {
		qi, err := e.insp.GetQueueInfo(e.queue)
		return err == nil && qi.Paused, err
	})
	if err != nil {
		return err
	}
	pausedAfter := time.Since(start)
	// Let the calls in flight come back before counting.
	err = waitUntil(ctx, "no task active", 30*time.Second, func(context.Context) (bool, error) {
		qi, err := e.insp.GetQueueInfo(e.queue)
		return err == nil && qi.Active == 0, err
	})
	if err != nil {
		return err
	}
	qi, err := e.insp.GetQueueInfo(e.queue)
	if err != nil {
		return err
	}
	st, err := e.stats(ctx)
	if err != nil {
		return err
	}
	paused401, pausedArchived := st.ByStatus["401"], qi.Archived
	prog, _ := e.progress(ctx)

	wrong.stop(30 * time.Second)
	if _, err := e.startWorker(ctx, "worker-right-key", right, "--concurrency", fmt.Sprint(concurrency), "--rate", "0"); err != nil {
		return err
	}
	if err := e.runEnqueue(ctx, "enqueue-resume", 30*time.Second, "--resume", "--queue", e.queue); err != nil {
		return err
	}
	resumedAt := time.Now()
	if err := waitExit(ctx, enq, 90*time.Second); err != nil {
		return err
	}
	t, st, err := e.account(ctx, r)
	if err != nil {
		return err
	}
	final, err := e.insp.GetQueueInfo(e.queue)
	if err != nil {
		return err
	}

	r.detail = append(r.detail,
		fmt.Sprintf("paused after %s", secs(pausedAfter)),
		fmt.Sprintf("401s %d while paused, %d in all (limit %d)", paused401, st.ByStatus["401"], concurrency),
		fmt.Sprintf("archived %d while paused, %d at the end", pausedArchived, final.Archived),
		fmt.Sprintf("%d results while paused", prog.Done()),
		fmt.Sprintf("done %s after resume", secs(enq.exitedAt.Sub(resumedAt))),
		fmt.Sprintf("%d created", t.created))
	r.pass = pausedAfter <= 5*time.Second && paused401 <= concurrency && st.ByStatus["401"] <= concurrency &&
		pausedArchived == 0 && final.Archived == 0 && prog.Done() == 0 &&
		t.lost == 0 && r.dups == 0 && t.created == n && enq.exitCode() == 0
	return nil
}

// fail400: a tenth of the profiles are refused for good; each must be
// recorded once with the API's error and request id, and called once.
func fail400(ctx context.Context, e *env, r *result) error {
	const n = 1000
	r.profiles = n
	if err := e.writeCSV(n); err != nil {
		return err
	}
	if err := e.startSandbox(ctx, "--fail", "400=0.1"); err != nil {
		return err
	}
	if _, err := e.startWorkers(ctx, 2, "--concurrency", "10", "--rate", "0"); err != nil {
		return err
	}
	enq, err := e.startEnqueue(ctx, "enqueue")
	if err != nil {
		return err
	}
	if err := waitExit(ctx, enq, time.Minute); err != nil {
		return err
	}
	t, st, err := e.account(ctx, r)
	if err != nil {
		return err
	}

	var wrongType, noRequestID, calledAgain int
	for id, row := range t.byID {
		if row.status != "failed" {
			continue
		}
		if row.errType != "invalid_request_error" {
			wrongType++
		}
		if !strings.HasPrefix(row.requestID, "req_") {
			noRequestID++
		}
		if st.ByProfile[id] != 1 || row.attempts != 1 {
			calledAgain++
		}
	}
	r.detail = append(r.detail,
		fmt.Sprintf("%d failed, %d created; 400s served %d", t.failed, t.created, st.ByStatus["400"]),
		fmt.Sprintf("failed rows: %d wrong error_type, %d without request_id, %d called more than once",
			wrongType, noRequestID, calledAgain),
		"enqueue "+enq.exitDesc()+" (1 expected: some failed)")
	r.pass = t.lost == 0 && r.dups == 0 && t.failed >= 50 && t.failed <= 150 &&
		int64(t.failed) == st.ByStatus["400"] && t.created+t.failed == n &&
		wrongType == 0 && noRequestID == 0 && calledAgain == 0 && enq.exitCode() == 1
	return nil
}

// sigterm: a worker is stopped mid-campaign; it must finish its calls in
// flight within --shutdown-timeout and leave nothing behind.
func sigterm(ctx context.Context, e *env, r *result) error {
	const n, concurrency = 500, 50
	const shutdownTimeout = 25 * time.Second
	r.profiles = n
	if err := e.writeCSV(n); err != nil {
		return err
	}
	if err := e.startSandbox(ctx, "--latency", "2s"); err != nil {
		return err
	}
	args := []string{"--concurrency", fmt.Sprint(concurrency), "--rate", "0", "--shutdown-timeout", shutdownTimeout.String()}
	first, err := e.startWorker(ctx, "worker1", e.apiKey, args...)
	if err != nil {
		return err
	}
	enq, err := e.startEnqueue(ctx, "enqueue")
	if err != nil {
		return err
	}
	if err := e.waitDone(ctx, 100, time.Minute); err != nil {
		return err
	}
	atTerm, _ := e.progress(ctx)
	if err := first.signal(syscall.SIGTERM); err != nil {
		return err
	}
	termAt := time.Now()
	exited := first.wait(ctx, shutdownTimeout+5*time.Second)
	if !exited {
		first.kill()
		r.detail = append(r.detail, fmt.Sprintf("worker1 still running %s after SIGTERM; killed", secs(shutdownTimeout+5*time.Second)))
	}
	exitAfter := time.Since(termAt)
	if exited {
		exitAfter = first.exitedAt.Sub(termAt)
	}
	atExit, _ := e.progress(ctx)

	if _, err := e.startWorker(ctx, "worker2", e.apiKey, args...); err != nil {
		return err
	}
	if err := waitExit(ctx, enq, 90*time.Second); err != nil {
		return err
	}
	t, _, err := e.account(ctx, r)
	if err != nil {
		return err
	}
	r.detail = append(r.detail,
		fmt.Sprintf("SIGTERM at %d done; worker1 %s after %s (limit %s), %d done by then",
			atTerm.Done(), first.exitDesc(), secs(exitAfter), secs(shutdownTimeout+5*time.Second), atExit.Done()),
		fmt.Sprintf("%d created", t.created))
	r.pass = exited && first.exitCode() == 0 && t.lost == 0 && r.dups == 0 && t.created == n && enq.exitCode() == 0
	return nil
}

// redisRestart: the fleet's Redis goes away for about 3 s mid-campaign
// and comes back from its append-only file.
func redisRestart(ctx context.Context, e *env, r *result) error {
	const n = 1000
	r.profiles = n
	port, err := freePort()
	if err != nil {
		return err
	}
	data := filepath.Join(e.dir, "redis-data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	redisProc, err := e.startRedis(ctx, "redis", port, data)
	if err != nil {
		return err
	}
	if err := e.useRedis(ctx, fmt.Sprintf("redis://127.0.0.1:%d/0", port)); err != nil {
		return err
	}
	if err := e.writeCSV(n); err != nil {
		return err
	}
	if err := e.startSandbox(ctx, "--latency", "50ms"); err != nil {
		return err
	}
	workers, err := e.startWorkers(ctx, 2, "--concurrency", "10", "--rate", "100")
	if err != nil {
		return err
	}
	enq, err := e.startEnqueue(ctx, "enqueue")
	if err != nil {
		return err
	}

	if err := e.waitDone(ctx, 300, time.Minute); err != nil {
		return err
	}
	atDown, _ := e.progress(ctx)
	if err := shutdownRedis(redisProc); err != nil {
		return err
	}
	downAt := time.Now()
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	if _, err := e.startRedis(ctx, "redis-restarted", port, data); err != nil {
		return err
	}
	upAt := time.Now()
	afterUp, _ := e.progress(ctx)

	samples, err := e.followToEnd(ctx, 2*time.Minute)
	if err != nil {
		return err
	}
	doneAt := samples[len(samples)-1].at
	gap, plateau := longestGap(samples, upAt)

	// enqueue --wait may have given up while Redis was away; run it again
	// to write the results (a re-run enqueues nothing new).
	enqNote := "enqueue --wait survived"
	if !enq.wait(ctx, 30*time.Second) {
		return fmt.Errorf("enqueue still running 30s after the campaign ended")
	}
	if enq.exitCode() != 0 {
		enqNote = fmt.Sprintf("enqueue --wait exited during the outage (%s) and was run again", enq.exitDesc())
		if err := e.runEnqueue(ctx, "enqueue-again", time.Minute, "--queue", e.queue, "--campaign", e.campaign,
			"--csv", e.csvPath, "--wait", "--out", e.outPath); err != nil {
			return err
		}
	}
	alive := 0
	for _, w := range workers {
		if w.running() {
			alive++
		}
	}
	t, _, err := e.account(ctx, r)
	if err != nil {
		return err
	}
	r.detail = append(r.detail,
		fmt.Sprintf("redis down at %d done for %s; %d done after restart", atDown.Done(), secs(upAt.Sub(downAt)), afterUp.Done()),
		fmt.Sprintf("all done %s after restart; the last %d waited %s (lease recovery)",
			secs(doneAt.Sub(upAt)), int64(n)-plateau.done, secs(gap)),
		fmt.Sprintf("workers alive %d/%d", alive, len(workers)),
		enqNote,
		fmt.Sprintf("%d created", t.created))
	r.pass = t.lost == 0 && r.dups == 0 && t.created == n
	return nil
}

// faultSpec is every transient fault the sandbox can serve, at once.
const faultSpec = "500=0.05,502=0.03,529=0.05,429=0.05,429-nohint=0.02,reset=0.02,drop=0.02," +
	"malformed=0.02,retry-true=0.02,html502=0.02"

// faults: a storm of transient faults; every profile must get its URL, or
// fail only once its retries are spent.
func faults(ctx context.Context, e *env, r *result) error {
	const n = 1000
	r.profiles = n
	if err := e.writeCSV(n); err != nil {
		return err
	}
	if err := e.startSandbox(ctx, "--fail", faultSpec, "--log-level", "debug"); err != nil {
		return err
	}
	if _, err := e.startWorkers(ctx, 2, "--concurrency", "10", "--rate", "0"); err != nil {
		return err
	}
	enq, err := e.startEnqueue(ctx, "enqueue")
	if err != nil {
		return err
	}
	if err := waitExit(ctx, enq, 3*time.Minute+30*time.Second); err != nil {
		return err
	}
	t, st, err := e.account(ctx, r)
	if err != nil {
		return err
	}
	answers, err := answersByProfile(e.logPath("sandbox"))
	if err != nil {
		return err
	}

	var spent, early []string
	for id, row := range t.byID {
		if row.status != "failed" {
			continue
		}
		seq := answers[id]
		counted, malformed := 0, 0
		for _, a := range seq {
			switch a {
			case "429":
			case "200": // a failed profile never got a usable 200
				malformed++
				counted++
			default:
				counted++
			}
		}
		desc := fmt.Sprintf("%s %s after [%s]", id, row.errType, strings.Join(seq, " "))
		if counted >= maxRetry+1 || (row.errType == "malformed_response" && malformed >= 3) {
			spent = append(spent, desc)
		} else {
			early = append(early, desc)
		}
	}
	r.detail = append(r.detail,
		fmt.Sprintf("%d created, %d failed after spending retries, %d failed early", t.created, len(spent), len(early)))
	for _, d := range early {
		r.detail = append(r.detail, "EARLY: "+d)
	}
	r.detail = append(r.detail, "answers "+formatCounts(st.ByStatus))
	r.pass = t.lost == 0 && r.dups == 0 && t.created+len(spent) == n && len(early) == 0
	return nil
}

// formatCounts prints counts as "200=1010 429=51 ...", keys sorted.
func formatCounts(m map[string]int64) string {
	items := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		items = append(items, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(items, " ")
}

// answersByProfile reads the sandbox's debug log: the answers each
// profile got, in order.
func answersByProfile(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg    string `json:"msg"`
			Path   string `json:"path"`
			Status string `json:"status"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "request" {
			continue
		}
		rest, ok := strings.CutPrefix(line.Path, "/v1/user_profiles/")
		if !ok {
			continue
		}
		id, _, _ := strings.Cut(rest, "/")
		out[id] = append(out[id], line.Status)
	}
	return out, sc.Err()
}
