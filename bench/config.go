package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of the flags.
const (
	defaultRedisURL      = "redis://127.0.0.1:6379/12"
	defaultProfiles      = 1500 // 30 s at the 50 req/s limit
	defaultLimit40       = 1200 // the acceptance run: 30 s at 40 req/s
	defaultLatency       = 100 * time.Millisecond
	defaultConcurrency   = 10
	defaultFail          = "500=0.025,529=0.025"
	defaultOverheadTasks = 20000
	defaultOverheadProcs = 1
	defaultOverheadConc  = "10,100" // the worker's default, and DESIGN's RSS point
	defaultOverheadRuns  = 5
	defaultEnqueueIDs    = 1_000_000
	defaultExportResults = 1_000_000
	defaultCurlParallel  = 16
	defaultTimeoutFactor = 3

	// defaultSandboxProcs is the sandbox's GOMAXPROCS. The sandbox stands
	// in for an API that runs on other machines; on a 2-core machine, one
	// P keeps its scheduler from spinning on the core the worker and Redis
	// need (46 -> 32 µs of sandbox CPU a call in the overhead scenario,
	// 2026-12-04). It answers 15,000 calls a second on it, far past any
	// scenario's need.
	defaultSandboxProcs = 1
)

// Scenario names, in the order they run.
const (
	scLimit50One   = "limit50-1w"
	scLimit50Three = "limit50-3w"
	scFaults       = "faults50-3w"
	scLimit40      = "limit40-3w"
	scCurl         = "curl50"
	scOverhead     = "overhead"
	scEnqueue      = "enqueue1m"
	scExport       = "export1m"
)

var allScenarios = []string{scLimit50One, scLimit50Three, scFaults, scLimit40, scCurl, scOverhead, scEnqueue, scExport}

// config is what the flags ask for.
type config struct {
	// Scenarios to run, in allScenarios order.
	Scenarios []string

	// RedisURL is the database the bench uses and empties between
	// scenarios. It must be on a loopback address.
	RedisURL string

	// Profiles is the campaign size of the 50 req/s scenarios and of the
	// curl baseline; Limit40Profiles that of the 40 req/s one.
	Profiles        int
	Limit40Profiles int

	// Latency is the sandbox's latency in the rate-limited scenarios.
	Latency time.Duration

	// Concurrency is each worker's --concurrency in those scenarios.
	Concurrency int

	// Fail is the sandbox's --fail spec in the faults scenario.
	Fail string

	// OverheadTasks, OverheadProcs and OverheadConc size the overhead
	// scenario: tasks drained, processes, and the --concurrency values of
	// each process, the same on both sides. OverheadRuns is how many
	// times each side runs at each concurrency; the median counts.
	OverheadTasks int
	OverheadProcs int
	OverheadConc  []int
	OverheadRuns  int

	// EnqueueIDs is the number of rows of the enqueue scenario.
	EnqueueIDs int

	// ExportResults is the number of results of the export scenario.
	ExportResults int

	// SandboxProcs is the sandbox's GOMAXPROCS; 0 leaves Go's default,
	// one per core.
	SandboxProcs int

	// CurlParallel is xargs -P in the curl baseline.
	CurlParallel int

	// TimeoutFactor bounds each campaign at this many times its ideal
	// duration, plus a minute.
	TimeoutFactor float64

	// Rev, when set, is the git revision whose commands are built and
	// measured; empty builds the working tree as it is.
	Rev string

	// WorkerBin, when set, is run instead of the freshly built cmd/worker,
	// to compare a change against the tree (an A/B run).
	WorkerBin string

	// WorkDir, when set, holds the binaries, inputs and logs and is kept;
	// otherwise a temporary directory is used and removed.
	WorkDir string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var (
		c         config
		scenarios string
		overConc  string
	)
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./bench [flags]")
		fmt.Fprintln(stderr, "scenarios: all, or a comma-separated list of", strings.Join(allScenarios, " "))
		fmt.Fprintln(stderr, "The database of --redis-url is emptied (FLUSHDB) between scenarios.")
		fs.PrintDefaults()
	}
	fs.StringVar(&scenarios, "scenarios", "all", "scenarios to run: all, or a comma-separated list")
	fs.StringVar(&c.RedisURL, "redis-url", defaultRedisURL, "Redis database of the bench, on loopback; it is FLUSHed")
	fs.IntVar(&c.Profiles, "profiles", defaultProfiles, "profiles of the 50 req/s scenarios and the curl baseline")
	fs.IntVar(&c.Limit40Profiles, "limit40-profiles", defaultLimit40, "profiles of the 40 req/s scenario")
	fs.DurationVar(&c.Latency, "latency", defaultLatency, "sandbox latency in the rate-limited scenarios")
	fs.IntVar(&c.Concurrency, "concurrency", defaultConcurrency, "worker --concurrency in the rate-limited scenarios")
	fs.StringVar(&c.Fail, "fail", defaultFail, "sandbox --fail of the faults scenario")
	fs.IntVar(&c.OverheadTasks, "overhead-tasks", defaultOverheadTasks, "tasks drained by each side of the overhead scenario")
	fs.IntVar(&c.OverheadProcs, "overhead-workers", defaultOverheadProcs, "worker processes on each side of the overhead scenario")
	fs.StringVar(&overConc, "overhead-concurrency", defaultOverheadConc, "--concurrency of each of those processes, comma-separated values")
	fs.IntVar(&c.OverheadRuns, "overhead-runs", defaultOverheadRuns, "runs of each side at each concurrency; the median counts")
	fs.IntVar(&c.EnqueueIDs, "enqueue-ids", defaultEnqueueIDs, "rows of the enqueue scenario")
	fs.IntVar(&c.ExportResults, "export-results", defaultExportResults, "results of the export scenario")
	fs.IntVar(&c.SandboxProcs, "sandbox-procs", defaultSandboxProcs, "GOMAXPROCS of the sandbox process (0: Go's default, one per core)")
	fs.IntVar(&c.CurlParallel, "curl-parallel", defaultCurlParallel, "xargs -P of the curl baseline")
	fs.Float64Var(&c.TimeoutFactor, "timeout-factor", defaultTimeoutFactor, "a campaign fails after this many times its ideal duration plus a minute")
	fs.StringVar(&c.Rev, "rev", "", "build the commands from this git revision (e.g. HEAD) instead of the working tree")
	fs.StringVar(&c.WorkerBin, "worker-bin", "", "run this worker binary instead of the one built from cmd/worker")
	fs.StringVar(&c.WorkDir, "workdir", "", "keep binaries, inputs and logs in this directory (default: a removed temporary one)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	var err error
	if c.Scenarios, err = parseScenarios(scenarios); err != nil {
		return c, err
	}
	if c.OverheadConc, err = parseInts(overConc); err != nil {
		return c, fmt.Errorf("--overhead-concurrency: %w", err)
	}
	return c, c.validate()
}

// parseScenarios turns "all" or a list into names in run order.
func parseScenarios(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return allScenarios, nil
	}
	var picked []string
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(allScenarios, name) {
			return nil, fmt.Errorf("--scenarios: unknown scenario %q; known: all %s", name, strings.Join(allScenarios, " "))
		}
		picked = append(picked, name)
	}
	if len(picked) == 0 {
		return nil, fmt.Errorf("--scenarios: none given")
	}
	var ordered []string
	for _, name := range allScenarios {
		if slices.Contains(picked, name) {
			ordered = append(ordered, name)
		}
	}
	return ordered, nil
}

// parseInts reads a comma-separated list of positive integers.
func parseInts(s string) ([]int, error) {
	var ns []int
	for item := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(item))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", item)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// validate names the first flag the bench cannot run with.
func (c config) validate() error {
	counts := []struct {
		name     string
		v, least int
	}{
		{"--profiles", c.Profiles, 2}, // a rate needs two requests
		{"--limit40-profiles", c.Limit40Profiles, 2},
		{"--concurrency", c.Concurrency, 1},
		{"--overhead-tasks", c.OverheadTasks, 2},
		{"--overhead-workers", c.OverheadProcs, 1},
		{"--overhead-runs", c.OverheadRuns, 1},
		{"--enqueue-ids", c.EnqueueIDs, 1},
		{"--export-results", c.ExportResults, 1},
		{"--curl-parallel", c.CurlParallel, 1},
	}
	for _, n := range counts {
		if n.v < n.least {
			return fmt.Errorf("%s %d: must be at least %d", n.name, n.v, n.least)
		}
	}
	if c.SandboxProcs < 0 {
		return fmt.Errorf("--sandbox-procs %d: must be 0 (Go's default) or more", c.SandboxProcs)
	}
	if c.Latency < 0 {
		return fmt.Errorf("--latency %s: must be 0 or more", c.Latency)
	}
	if c.TimeoutFactor < 1 {
		return fmt.Errorf("--timeout-factor %v: must be at least 1", c.TimeoutFactor)
	}
	return checkRedisURL(c.RedisURL)
}

// checkRedisURL accepts only a Redis on a loopback address: the bench
// empties the database it is given.
func checkRedisURL(raw string) error {
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return fmt.Errorf("--redis-url: not a valid redis URL: %v", err)
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return fmt.Errorf("--redis-url: address %q: %w", opts.Addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--redis-url: %s is not a loopback address; the bench only runs against a local Redis", host)
	}
	return nil
}
