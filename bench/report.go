package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

const mib = 1 << 20

// report is what the scenarios measured.
type report struct {
	runID   string
	source  string // what was built
	machine string
	started time.Time
	elapsed time.Duration

	fleet    []fleetResult    // rate-limited scenarios and the curl baseline
	overhead []overheadResult // one per concurrency
	enqueue  *enqueueResult
	export   *exportResult
	failed   []string // scenarios that ended with an error
}

func newReport(runID string) *report {
	return &report{runID: runID, started: time.Now()}
}

// describeMachine names the CPU, cores, Go and Redis of the run.
func describeMachine(ctx context.Context, rdb *redis.Client) string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	redisVersion := "?"
	if info, err := rdb.Info(ctx, "server").Result(); err == nil {
		for line := range strings.SplitSeq(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				redisVersion = v
			}
		}
	}
	return fmt.Sprintf("%d cores (%s), %s, Redis %s", runtime.NumCPU(), model, runtime.Version(), redisVersion)
}

// print writes every table, then the targets.
func (r *report) print(w io.Writer, cfg config) {
	fmt.Fprintf(w, "\nenrollq bench, run %s, %s; took %s\n", r.runID,
		r.started.UTC().Format("2006-01-02 15:04 MST"), r.elapsed.Round(time.Second))
	fmt.Fprintf(w, "built: %s\nmachine: %s\n", r.source, r.machine)
	procs := "Go's default"
	if cfg.SandboxProcs > 0 {
		procs = fmt.Sprint(cfg.SandboxProcs)
	}
	fmt.Fprintf(w, "sandbox: GOMAXPROCS %s\n", procs)
	if len(r.fleet) > 0 {
		fmt.Fprintf(w, "\nRate-limited campaigns (sandbox burst %d, latency %s; workers --concurrency %d --burst 1)\n\n",
			sandboxBurst, cfg.Latency, cfg.Concurrency)
		r.printFleet(w)
	}
	if len(r.overhead) > 0 {
		fmt.Fprintf(w, "\nOverhead: limit off, sandbox latency 0, same tasks, processes and concurrency; "+
			"%d rounds of the three sides, in turns;\n"+
			"tasks/s and CPU are the median run's, \"of no-op\" the median of the rounds' ratios\n\n", cfg.OverheadRuns)
		r.printOverhead(w)
	}
	if r.enqueue != nil {
		fmt.Fprint(w, "\nEnqueue from CSV, no worker running\n\n")
		r.printEnqueue(w)
	}
	if r.export != nil {
		fmt.Fprint(w, "\nExport of a finished campaign to CSV, in input order\n\n")
		r.printExport(w)
	}
	if len(r.targets()) > 0 {
		fmt.Fprint(w, "\nTargets\n\n")
		r.printTargets(w)
	} else {
		fmt.Fprint(w, "\nNo targets: the scenarios that ran are there to be compared (the curl baseline)\n")
	}
	if len(r.failed) > 0 {
		fmt.Fprintf(w, "\nScenarios that ended with an error (see the log above): %s\n", strings.Join(r.failed, ", "))
	}
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func (r *report) printFleet(w io.Writer) {
	t := newTable(w)
	fmt.Fprintln(t, "scenario\tclient\tprofiles\tlimit/s\treq/s\tof limit\t200/s\t429\t5xx\tpeak/s\t"+
		"lost\tdup\tfailed\tp50\tp99\twall\tideal\tworker CPU\tworker RSS\tnote")
	for _, f := range r.fleet {
		cpu, rss, p50, p99 := "-", "-", "-", "-"
		if f.hasWorkers {
			cpu = fmt.Sprintf("%.1f s", f.workers.cpu.Seconds())
			rss = fmt.Sprintf("%.1f MiB", float64(f.workers.peakRSS)/mib)
			p50, p99 = seconds(f.p50), seconds(f.p99)
		}
		fmt.Fprintf(t, "%s\t%s\t%d\t%g\t%.2f\t%.1f%%\t%.2f\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			f.spec.name, f.client, f.spec.profiles, f.spec.limit.rate, f.rate, 100*f.ratio(), f.okRate,
			f.stats.ByStatus["429"], f.status5, f.stats.PeakRPS, f.lost, f.dup, f.failed,
			p50, p99, seconds(f.wall), seconds(f.spec.ideal()), cpu, rss, f.note)
	}
	t.Flush()
}

func (r *report) printOverhead(w io.Writer) {
	t := newTable(w)
	fmt.Fprintln(t, "side\tprocesses\tconcurrency\ttasks\ttasks/s\tof no-op\tworker CPU/task\tRedis CPU/task\t"+
		"sandbox CPU/call\tconns closed\tpeak RSS\tall runs, tasks/s")
	for _, o := range r.overhead {
		noop, sdk, ours := o.medians()
		for _, d := range []struct {
			median drainResult
			runs   []drainResult
		}{{noop, o.noop}, {sdk, o.sdk}, {ours, o.ours}} {
			ratio := o.sideRatio(d.runs)
			m := d.median
			sandboxCPU, conns := "-", "-"
			if m.calls > 0 {
				sandboxCPU, conns = perTask(m.sandboxCPU, int(m.calls)), fmt.Sprint(m.closedConns)
			}
			fmt.Fprintf(t, "%s\t%d\t%d\t%d\t%.0f\t%.1f%%\t%s\t%s\t%s\t%s\t%.1f MiB\t%s\n",
				m.side, m.procs, m.conc, m.tasks, m.rate, 100*ratio,
				perTask(m.usage.cpu, m.tasks), perTask(m.redisCPU, m.tasks), sandboxCPU, conns,
				float64(m.usage.peakRSS)/mib, runRates(d.runs))
		}
	}
	t.Flush()
}

// runRates lists each run's rate.
func runRates(runs []drainResult) string {
	rates := make([]string, len(runs))
	for i, r := range runs {
		rates[i] = fmt.Sprintf("%.0f", r.rate)
	}
	return strings.Join(rates, " ")
}

// percents lists ratios as percentages.
func percents(ratios []float64) string {
	s := make([]string, len(ratios))
	for i, r := range ratios {
		s[i] = fmt.Sprintf("%.1f%%", 100*r)
	}
	return strings.Join(s, " ")
}

// perTask is a CPU time spread over n tasks, in microseconds.
func perTask(cpu time.Duration, n int) string {
	return fmt.Sprintf("%.0f µs", float64(cpu.Microseconds())/float64(n))
}

func (r *report) printEnqueue(w io.Writer) {
	e := r.enqueue
	t := newTable(w)
	fmt.Fprintln(t, "ids\twall\ttasks/s\tproducer peak RSS\tproducer CPU\tpending after")
	fmt.Fprintf(t, "%d\t%s\t%.0f\t%.1f MiB\t%.1f s\t%d\n", e.ids, seconds(e.wall), e.rate,
		float64(e.usage.peakRSS)/mib, e.usage.cpu.Seconds(), e.pending)
	t.Flush()
}

func (r *report) printExport(w io.Writer) {
	e := r.export
	t := newTable(w)
	fmt.Fprintln(t, "results\tstored in\texport wall\trows/s\texport peak RSS\texport CPU\trows written")
	fmt.Fprintf(t, "%d\t%s\t%s\t%.0f\t%.1f MiB\t%.1f s\t%d\n", e.results, seconds(e.fill), seconds(e.wall), e.rate,
		float64(e.usage.peakRSS)/mib, e.usage.cpu.Seconds(), e.rows)
	t.Flush()
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// target is one number of DESIGN.md or the issue, and what was measured.
type target struct {
	what string
	want string
	got  string
	pass bool
}

// targets lists the targets of the scenarios that ran.
func (r *report) targets() []target {
	var ts []target
	for _, f := range r.fleet {
		ts = append(ts, fleetTargets(f)...)
	}
	for _, o := range r.overhead {
		_, _, ours := o.medians()
		ts = append(ts,
			target{fmt.Sprintf("overhead at concurrency %d: worker vs asynq no-op", o.conc), ">= 50%",
				fmt.Sprintf("%.1f%% (rounds: %s)", 100*o.ratio(), percents(o.roundRatios(o.ours))), o.ratio() >= 0.50},
			target{fmt.Sprintf("overhead at concurrency %d: worker peak RSS", o.conc), "< 100 MiB",
				fmt.Sprintf("%.1f MiB", float64(maxRSS(o.ours))/mib), maxRSS(o.ours) < 100*mib},
			target{fmt.Sprintf("overhead at concurrency %d: every task created", o.conc), fmt.Sprint(ours.tasks),
				fmt.Sprint(minCreated(o.ours)), minCreated(o.ours) == int64(ours.tasks)},
		)
	}
	if e := r.enqueue; e != nil {
		ts = append(ts,
			target{fmt.Sprintf("enqueue %d ids from CSV", e.ids), ">= 30000 tasks/s",
				fmt.Sprintf("%.0f tasks/s", e.rate), e.rate >= 30000},
			target{"enqueue: producer peak RSS", "< 64 MiB",
				fmt.Sprintf("%.1f MiB", float64(e.usage.peakRSS)/mib), e.usage.peakRSS < 64*mib},
		)
	}
	if e := r.export; e != nil {
		ts = append(ts,
			target{fmt.Sprintf("export %d results: rows in input order", e.results), fmt.Sprint(e.results),
				fmt.Sprint(e.rows), e.rows == e.results},
		)
	}
	return ts
}

// maxRSS is the largest peak RSS of the runs.
func maxRSS(runs []drainResult) int64 {
	var m int64
	for _, r := range runs {
		m = max(m, r.usage.peakRSS)
	}
	return m
}

// minCreated is the fewest created results of the runs.
func minCreated(runs []drainResult) int64 {
	m := runs[0].created
	for _, r := range runs[1:] {
		m = min(m, r.created)
	}
	return m
}

// fleetTargets are the targets of one rate-limited scenario. The curl
// baseline has none: it is there to be compared.
func fleetTargets(f fleetResult) []target {
	if !f.hasWorkers {
		return nil
	}
	name := f.spec.name
	requests := f.stats.Requests
	n429 := f.stats.ByStatus["429"]
	rate := fmt.Sprintf("%.1f%% (%.2f/s)", 100*f.ratio(), f.rate)
	rows := target{name + ": one result row per profile", "0 lost, 0 dup",
		fmt.Sprintf("%d lost, %d dup", f.lost, f.dup), f.lost == 0 && f.dup == 0}

	switch name {
	case scLimit50One:
		return []target{
			{name + ": rate vs limit", ">= 98%", rate, f.ratio() >= 0.98},
			{name + ": 429s", "0", fmt.Sprint(n429), n429 == 0},
			rows,
		}
	case scLimit50Three:
		return []target{
			{name + ": rate vs limit", ">= 97%", rate, f.ratio() >= 0.97},
			{name + ": 429s", "<= 0.1% of requests",
				fmt.Sprintf("%d of %d", n429, requests), float64(n429) <= 0.001*float64(requests)},
			rows,
		}
	case scLimit40:
		return []target{
			{name + ": rate vs limit (issue 5)", ">= 97%", rate, f.ratio() >= 0.97},
			{name + ": 429s (issue 5)", "<= 1", fmt.Sprint(n429), n429 <= 1},
			{name + ": sandbox peak_rps (issue 5)", "<= 45", fmt.Sprint(f.stats.PeakRPS), f.stats.PeakRPS <= 45},
			rows,
		}
	case scFaults:
		failed := target{name + ": every profile created despite faults", "0 failed",
			fmt.Sprint(f.failed), f.failed == 0}
		return []target{rows, failed}
	}
	return []target{rows}
}

func (r *report) printTargets(w io.Writer) {
	t := newTable(w)
	fmt.Fprintln(t, "what\ttarget\tmeasured\tresult")
	for _, tg := range r.targets() {
		result := "PASS"
		if !tg.pass {
			result = "FAIL"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", tg.what, tg.want, tg.got, result)
	}
	t.Flush()
}

// allPassed reports whether every target of the scenarios that ran was met.
func (r *report) allPassed() bool {
	for _, t := range r.targets() {
		if !t.pass {
			return false
		}
	}
	return true
}
