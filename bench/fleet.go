package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/sandbox"
)

// sandboxBurst is the stand-in API's burst in the rate-limited scenarios.
// The workers keep their default burst of 1.
const sandboxBurst = 5

// fleetSpec is a rate-limited campaign: a sandbox with a limit, worker
// processes sharing it, the producer following the campaign to the end.
type fleetSpec struct {
	name     string
	profiles int
	workers  int
	limit    sandboxLimit // the workers' --rate is limit.rate
}

// fleetScenario returns the spec of a named fleet scenario.
func (b *bench) fleetScenario(name string) fleetSpec {
	limit := func(rate float64, fail string) sandboxLimit {
		return sandboxLimit{rate: rate, burst: sandboxBurst, latency: b.cfg.Latency, fail: fail}
	}
	switch name {
	case scLimit50One:
		return fleetSpec{name: name, profiles: b.cfg.Profiles, workers: 1, limit: limit(50, "")}
	case scLimit50Three:
		return fleetSpec{name: name, profiles: b.cfg.Profiles, workers: 3, limit: limit(50, "")}
	case scFaults:
		return fleetSpec{name: name, profiles: b.cfg.Profiles, workers: 3, limit: limit(50, b.cfg.Fail)}
	case scLimit40:
		return fleetSpec{name: name, profiles: b.cfg.Limit40Profiles, workers: 3, limit: limit(40, "")}
	}
	panic("no fleet scenario " + name) // parseScenarios admits only known names
}

// ideal is the campaign's shortest possible duration: profiles / limit.
func (s fleetSpec) ideal() time.Duration {
	return time.Duration(float64(s.profiles) / s.limit.rate * float64(time.Second))
}

// fleetResult is one row of the rate-limited table: a fleet scenario, or
// the curl baseline.
type fleetResult struct {
	spec   fleetSpec
	client string // who called the API: "3 workers", "curl -P 16"

	stats   sandbox.Stats
	rate    float64 // sandbox arrivals a second, first to last
	okRate  float64 // 200s a second over the same span
	status5 int64   // 5xx and 529 answers

	rows      int // rows in the output (profiles answered 200, for curl)
	lost, dup int
	failed    int // rows with status failed

	p50, p99 time.Duration // task latency: finished_at - enqueued_at
	wall     time.Duration

	workers    usage // CPU added up over the workers, the largest peak RSS
	hasWorkers bool

	note string
}

// ratio is the achieved rate over the limit.
func (r fleetResult) ratio() float64 { return r.rate / r.spec.limit.rate }

// runFleet runs one rate-limited campaign end to end.
func (b *bench) runFleet(ctx context.Context, s fleetSpec) (fleetResult, error) {
	n := b.names(s.name)
	res := fleetResult{spec: s, client: fmt.Sprintf("%d worker", s.workers), hasWorkers: true}
	if s.workers > 1 {
		res.client += "s"
	}
	input := filepath.Join(b.dir, s.name+".csv")
	if err := writeProfiles(input, s.profiles); err != nil {
		return res, err
	}

	sb, err := b.startSandbox(ctx, s.name, s.limit)
	if err != nil {
		return res, err
	}
	defer sb.kill()

	env := childEnv("REDIS_URL="+b.cfg.RedisURL, "ANTHROPIC_BASE_URL="+sb.baseURL, "ANTHROPIC_API_KEY="+n.apiKey)
	workers, err := b.startWorkers(s.workers, s.name, env, b.bin.worker, []string{
		"--queue", n.queue, "--concurrency", fmt.Sprint(b.cfg.Concurrency),
		"--rate", fmt.Sprint(s.limit.rate), "--log-level", "info",
	})
	if err != nil {
		return res, err
	}
	defer group(workers).killAll()
	if err := b.waitServers(ctx, n.queue, pidsOf(workers)); err != nil {
		return res, err
	}

	out := filepath.Join(b.dir, s.name+"-results.csv")
	res.wall, res.note, err = b.enqueueAndWait(ctx, s, n, env, input, out)
	if err != nil {
		return res, err
	}

	if res.workers, err = sumUsage(workers); err != nil {
		return res, err
	}
	if err := stopAll(workers); err != nil {
		return res, err
	}
	if res.stats, err = sb.stats(ctx); err != nil {
		return res, err
	}
	if err := sb.stop(); err != nil {
		return res, err
	}
	res.rate, res.okRate = arrivalRate(res.stats), okRate(res.stats)
	res.status5 = statusCount(res.stats, "5")

	if err := res.checkRows(out); err != nil {
		return res, err
	}
	res.p50, res.p99, err = b.taskLatency(ctx, n.campaign)
	return res, err
}

// enqueueAndWait runs the producer with --wait and returns its wall time.
// An exit code of 1 (some profile failed) is a note, not an error: the
// results are still written and counted.
func (b *bench) enqueueAndWait(ctx context.Context, s fleetSpec, n names, env []string, input, out string) (time.Duration, string, error) {
	timeout := time.Duration(float64(s.ideal())*b.cfg.TimeoutFactor) + time.Minute
	p, err := spawn(spec{
		name: "enqueue", bin: b.bin.enqueue, env: env,
		args: []string{"--csv", input, "--queue", n.queue, "--campaign", n.campaign,
			"--wait", "--out", out},
		logPath: filepath.Join(b.dir, s.name+"-enqueue.log"),
	})
	if err != nil {
		return 0, "", err
	}
	defer p.kill()

	err = p.wait(ctx, timeout)
	wall := p.ended.Sub(p.started)
	switch {
	case err == nil:
		return wall, "", nil
	case p.exitCode() == 1:
		return wall, "enqueue exit 1: some profiles failed", nil
	}
	return wall, "", fmt.Errorf("%w (see %s-enqueue.log)", err, s.name)
}

// okRate is the rate of 200 answers over the span of all arrivals.
func okRate(st sandbox.Stats) float64 {
	span := st.LastAt.Sub(st.FirstAt).Seconds()
	if span <= 0 {
		return 0
	}
	return float64(st.ByStatus["200"]) / span
}

// checkRows reads the results file and counts its rows against the input:
// profiles without a row (lost), extra rows (dup) and failed rows.
func (r *fleetResult) checkRows(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	defer f.Close()

	cr := csv.NewReader(f)
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("read results header of %s: %w", path, err)
	}
	idCol, statusCol := slices.Index(header, "user_profile_id"), slices.Index(header, "status")
	if idCol < 0 || statusCol < 0 {
		return fmt.Errorf("results %s: header %q lacks user_profile_id or status", path, header)
	}

	seen := make(map[string]int, r.spec.profiles)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read results %s: %w", path, err)
		}
		r.rows++
		seen[rec[idCol]]++
		if rec[statusCol] != string(campaign.StatusCreated) {
			r.failed++
		}
	}
	r.lost, r.dup = countLostDup(seen, r.spec.profiles)
	return nil
}

// countLostDup compares the times each id was seen with the input's
// profiles 0..n-1: ids never seen are lost, sightings past the first are
// duplicates.
func countLostDup(seen map[string]int, n int) (lost, dup int) {
	for i := range n {
		switch c := seen[profileID(i)]; {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	return lost, dup
}

// taskLatency is the p50 and p99 of finished_at - enqueued_at over the
// campaign's results.
func (b *bench) taskLatency(ctx context.Context, name string) (p50, p99 time.Duration, err error) {
	results, err := campaign.NewStore(b.rdb, 0).Results(ctx, name)
	if err != nil {
		return 0, 0, err
	}
	lat := make([]time.Duration, 0, len(results))
	for _, r := range results {
		if !r.EnqueuedAt.IsZero() && !r.FinishedAt.IsZero() {
			lat = append(lat, r.FinishedAt.Sub(r.EnqueuedAt))
		}
	}
	if len(lat) == 0 {
		return 0, 0, fmt.Errorf("campaign %s: no result carries enqueued_at and finished_at", name)
	}
	slices.Sort(lat)
	return percentile(lat, 0.50), percentile(lat, 0.99), nil
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
