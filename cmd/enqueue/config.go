package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/client"
	"github.com/enrollq/enrollq/internal/producer"
	"github.com/enrollq/enrollq/internal/sandbox"
	"github.com/enrollq/enrollq/internal/sink"
	"github.com/enrollq/enrollq/internal/source"
	"github.com/enrollq/enrollq/internal/sqldb"
	"github.com/enrollq/enrollq/internal/tasks"
	"github.com/enrollq/enrollq/internal/worker"
)

// DefaultRefreshWithin is --refresh's default window: URLs that expire
// within it are minted again.
const DefaultRefreshWithin = 30 * time.Minute

// defaultCheckpoint is how often a local run writes --out while it goes
// on: at most a minute of minted URLs is lost to a kill -9.
const defaultCheckpoint = time.Minute

// config is everything the flags and environment say.
type config struct {
	// given are the flags set on the command line, so that one that the
	// chosen operation or mode would ignore is refused (see onlyFor and
	// runFlagsBelong); apiFlagNames are apiFlags' names.
	given        map[string]bool
	apiFlagNames []string

	csvPath  string
	idColumn string // "" with --db-url: the query's first column

	// SQL input, instead of csvPath.
	dbURL        string
	query        string
	queryTimeout time.Duration

	campaign string
	out      string
	redisURL string
	queue    string
	queueSet bool // --queue was given; otherwise --refresh, --retry-failed and --status use the campaign's own
	idSet    bool // --id-column was given
	wait     bool
	local    bool

	delimiter string // --delimiter as given; comma is what it means
	comma     rune   // 0: the reader's default (',')

	resume      bool
	retryFailed bool
	refresh     bool
	within      time.Duration // with refresh: URLs expiring this soon are minted again
	status      bool
	json        bool          // with status: print JSON
	sample      time.Duration // with status: how long to watch for the rate

	concurrency int // enqueue goroutines
	maxRetry    int
	deadline    time.Duration

	// Local mode.
	workers   int
	rate      float64
	rateSet   bool // --rate was given: in fleet mode, the estimate's rate
	burst     int
	sandbox   bool
	sbFail    string
	sbLatency time.Duration
	sbTTL     time.Duration
	sbRate    float64
	sbBurst   int
	// checkpoint: local mode writes --out this often while it runs (0:
	// only at the end).
	checkpoint time.Duration

	apiFlags client.Flags
	api      client.Config

	sinkFlags sink.Flags
	sink      sink.ResultsConfig // Target "" without --sink

	logLevel string

	// progressOut, when set, is the terminal progress bars are drawn on;
	// nil prints plain progress lines to standard output instead.
	progressOut io.Writer
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: enqueue --csv FILE [flags]")
		fmt.Fprintln(stderr, "       enqueue --db-url URL --query SQL [flags]")
		fmt.Fprintln(stderr, "       enqueue --resume [--queue Q]")
		fmt.Fprintln(stderr, "       enqueue --retry-failed --campaign NAME")
		fmt.Fprintln(stderr, "       enqueue --refresh --campaign NAME [--within D]")
		fmt.Fprintln(stderr, "       enqueue --status --campaign NAME [--json]")
		fs.PrintDefaults()
	}

	fs.StringVar(&c.csvPath, "csv", "", "CSV file of profiles, or - for standard input")
	fs.StringVar(&c.idColumn, "id-column", source.DefaultIDColumn, "name of the id column (any case); with --db-url the default is the query's first column")
	fs.StringVar(&c.delimiter, "delimiter", "", `field separator of --csv: ",", ";", "tab" or another single character (default ",", or what a "sep=" first line says)`)
	fs.StringVar(&c.dbURL, "db-url", "", "read profiles from this PostgreSQL (postgres://) or MySQL/MariaDB (mysql://) database, with --query, instead of --csv")
	fs.StringVar(&c.query, "query", "", "with --db-url: the SELECT that yields the profiles, run in a read-only transaction")
	fs.DurationVar(&c.queryTimeout, "query-timeout", source.DefaultQueryTimeout, "with --db-url: how long the query may take, rows read included")
	fs.StringVar(&c.campaign, "campaign", "", "campaign name; {date} becomes today's UTC date, e.g. onboarding-{date} (default: input file name and the date)")
	fs.StringVar(&c.out, "out", "", "write results to this .csv or .jsonl file (local mode, or fleet mode with --wait)")
	fs.StringVar(&c.redisURL, "redis-url", os.Getenv("REDIS_URL"), "Redis of a worker fleet (env REDIS_URL); empty runs everything locally")
	fs.StringVar(&c.queue, "queue", worker.DefaultQueue, "asynq queue name; --refresh, --retry-failed and --status default to the queue the campaign was enqueued on")
	fs.BoolVar(&c.local, "local", false, "run everything in-process even when REDIS_URL is set")
	fs.BoolVar(&c.wait, "wait", false, "fleet mode: follow the campaign to its end, then write --out")
	fs.BoolVar(&c.resume, "resume", false, "unpause --queue (after fixing a key, billing or permission fault) and exit")
	fs.BoolVar(&c.retryFailed, "retry-failed", false, "enqueue --campaign's failed profiles again")
	fs.BoolVar(&c.refresh, "refresh", false, "enqueue --campaign's profiles whose URL expires within --within (or has expired) again, for fresh links")
	fs.DurationVar(&c.within, "within", DefaultRefreshWithin, "with --refresh: mint again the URLs that expire within this")
	fs.BoolVar(&c.status, "status", false, "print --campaign's counts, its queue's state and an ETA, and exit")
	fs.BoolVar(&c.json, "json", false, "with --status: print one JSON object")
	fs.DurationVar(&c.sample, "status-sample", defaultStatusSample, "with --status: how long to watch the campaign to measure its rate for the ETA (0: no ETA)")
	fs.IntVar(&c.concurrency, "concurrency", producer.DefaultConcurrency, "enqueue goroutines")
	fs.IntVar(&c.maxRetry, "max-retry", tasks.DefaultMaxRetry, "retries of a transient fault per profile")
	fs.DurationVar(&c.deadline, "deadline", 0, "give up on profiles still without a URL this long after the start (0: no deadline)")

	fs.DurationVar(&c.checkpoint, "checkpoint", defaultCheckpoint, "local mode: write --out this often while the run goes on, so that a killed run keeps its URLs (0: only at the end)")
	fs.IntVar(&c.workers, "workers", worker.DefaultConcurrency, "local mode: tasks run at once")
	fs.Float64Var(&c.rate, "rate", worker.DefaultRate, "local mode: API calls per second (0: no limit); fleet mode: the workers' rate, to estimate the campaign's length")
	fs.IntVar(&c.burst, "burst", worker.DefaultBurst, "local mode: API calls allowed at once")
	fs.BoolVar(&c.sandbox, "sandbox", false, "local mode: serve the stand-in API in-process (no key needed)")
	fs.StringVar(&c.sbFail, "sandbox-fail", "", `with --sandbox: injected faults, e.g. "500=0.05,429=0.05"`)
	fs.DurationVar(&c.sbLatency, "sandbox-latency", 0, "with --sandbox: latency of each call")
	fs.DurationVar(&c.sbTTL, "sandbox-ttl", 0, "with --sandbox: URL lifetime (default 1h)")
	fs.Float64Var(&c.sbRate, "sandbox-rate", 0, "with --sandbox: the stand-in's own rate limit (0: none)")
	fs.IntVar(&c.sbBurst, "sandbox-burst", 0, "with --sandbox: the stand-in's burst")

	c.apiFlags.Register(fs)
	c.sinkFlags.Register(fs)
	fs.StringVar(&c.logLevel, "log-level", "warn", "debug, info, warn or error")

	if err := fs.Parse(args); err != nil {
		return c, usageError{err}
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	c.rateSet, c.queueSet, c.idSet = flagSet(fs, "rate"), flagSet(fs, "queue"), flagSet(fs, "id-column")
	c.given = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { c.given[f.Name] = true })
	var apiFlags client.Flags // a spare: Register sets its flags' defaults
	c.apiFlagNames = flagNames(apiFlags.Register)
	if c.local {
		c.redisURL = ""
	}
	if c.dbURL != "" && !flagSet(fs, "id-column") {
		c.idColumn = ""
	}
	return c, c.validate()
}

// opFlags are the flags each one-shot operation reads; any other flag
// given with it would do nothing, and is refused.
var opFlags = map[string][]string{
	"resume":       {"queue", "redis-url", "log-level"},
	"status":       {"campaign", "queue", "redis-url", "json", "status-sample", "log-level"},
	"retry-failed": {"campaign", "queue", "redis-url", "max-retry", "log-level"},
	"refresh":      {"campaign", "queue", "redis-url", "max-retry", "within", "log-level"},
}

// onlyFor refuses a flag given with the one-shot operation op that op
// does not read.
func (c *config) onlyFor(op string) error {
	for _, name := range slices.Sorted(maps.Keys(c.given)) {
		if name != op && !slices.Contains(opFlags[op], name) {
			return usageError{fmt.Errorf("--%s has no effect with --%s (it reads --%s)",
				name, op, strings.Join(opFlags[op], ", --"))}
		}
	}
	return nil
}

// refuse refuses the first of names that was given, saying why it would
// have no effect.
func (c *config) refuse(why string, names ...string) error {
	for _, name := range names {
		if c.given[name] {
			return usageError{fmt.Errorf("--%s has no effect %s", name, why)}
		}
	}
	return nil
}

// flagRule names flags that a run in some mode ignores, and why.
type flagRule struct {
	why   string
	names []string
}

// runFlagsBelong refuses the flags that a run of a campaign in this mode
// would ignore.
func (c *config) runFlagsBelong(local bool) error {
	rules := []flagRule{
		{"here: it goes with --refresh", []string{"within"}},
		{"here: it goes with --status", []string{"status-sample"}},
	}
	if c.dbURL != "" {
		rules = append(rules, flagRule{"with --db-url: it reads --csv", []string{"delimiter"}})
	} else {
		rules = append(rules, flagRule{"without --db-url", []string{"query-timeout"}})
	}
	if !c.sandbox {
		rules = append(rules, flagRule{"without --sandbox", []string{"sandbox-latency", "sandbox-ttl", "sandbox-rate", "sandbox-burst"}})
	}
	if !c.sinkFlags.Set() {
		rules = append(rules, flagRule{"without --sink", []string{"sink-table", "sink-secret-file"}})
	}
	if c.local && c.given["redis-url"] {
		rules = append(rules, flagRule{"with --local: a local run uses an embedded Redis", []string{"redis-url"}})
	}
	if !local {
		rules = append(rules, flagRule{"in fleet mode (a Redis URL is set): the workers run the tasks and make the API calls; give it to cmd/worker",
			append([]string{"workers", "burst", "checkpoint"}, c.apiFlagNames...)})
	}
	for _, r := range rules {
		if err := c.refuse(r.why, r.names...); err != nil {
			return err
		}
	}
	return nil
}

// flagNames lists the flags that register adds to a flag set.
func flagNames(register func(*flag.FlagSet)) []string {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	register(fs)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

func (c *config) validate() error {
	switch {
	case c.resume:
		if c.redisURL == "" {
			return usageError{errors.New("--resume needs --redis-url (or REDIS_URL): it unpauses a fleet's queue in that Redis; a local run keeps no queue once it ends")}
		}
		return c.onlyFor("resume")
	case c.json && !c.status:
		return usageError{errors.New("--json goes with --status")}
	case c.status:
		if c.campaign == "" {
			return usageError{errors.New("--status needs --campaign")}
		}
		if c.redisURL == "" {
			return usageError{errors.New("--status needs --redis-url (a local run keeps nothing once it ends)")}
		}
		if c.sample < 0 {
			return usageError{fmt.Errorf("--status-sample %s: must be 0 or more", c.sample)}
		}
		if err := c.onlyFor("status"); err != nil {
			return err
		}
	case c.retryFailed && c.refresh:
		return usageError{errors.New("--retry-failed and --refresh: choose one")}
	case c.retryFailed, c.refresh:
		op := "--retry-failed"
		if c.refresh {
			op = "--refresh"
		}
		if c.campaign == "" {
			return usageError{fmt.Errorf("%s needs --campaign", op)}
		}
		if c.redisURL == "" {
			return usageError{fmt.Errorf("%s needs --redis-url (a local run keeps no results to act on)", op)}
		}
		if c.within < 0 {
			return usageError{fmt.Errorf("--within %s: must be 0 (expired only) or more", c.within)}
		}
		if err := c.onlyFor(op[2:]); err != nil {
			return err
		}
	case c.csvPath != "" && c.dbURL != "":
		return usageError{errors.New("--csv and --db-url both name the input: give one")}
	case c.dbURL != "":
		if err := c.validateQuery(); err != nil {
			return err
		}
	case c.csvPath == "":
		return usageError{errors.New("--csv is required (a file, or - for standard input), or --db-url with --query")}
	}
	if c.query != "" && c.dbURL == "" {
		return usageError{errors.New("--query needs --db-url")}
	}
	if c.delimiter != "" {
		comma, err := source.ParseDelimiter(c.delimiter)
		if err != nil {
			return usageError{fmt.Errorf("--delimiter: %w", err)}
		}
		c.comma = comma
	}
	now := time.Now()
	if c.campaign == "" {
		c.campaign = defaultCampaign(c.inputName(), now)
	}
	c.campaign = expandDate(c.campaign, now)
	if err := campaign.ValidateName(c.campaign); err != nil {
		return usageError{fmt.Errorf("--campaign: %w", err)}
	}
	if c.status {
		return nil
	}
	if c.out != "" {
		if _, err := formatOf(c.out); err != nil {
			return usageError{fmt.Errorf("--out: %w", err)}
		}
	}
	local := c.redisURL == ""
	if !c.retryFailed && !c.refresh {
		if err := c.runFlagsBelong(local); err != nil {
			return err
		}
	}
	if c.out != "" && c.csvPath != "" && c.csvPath != "-" && samePath(c.out, c.csvPath) {
		return usageError{fmt.Errorf("--out %s is the input file: name another file", c.out)}
	}
	if c.sinkFlags.Set() {
		if !local {
			return usageError{errors.New("--sink in fleet mode belongs on cmd/worker: the workers hand on the results")}
		}
		var err error
		if c.sink, err = c.sinkFlags.Config(); err != nil {
			return usageError{err}
		}
	}
	switch {
	case local && c.out == "" && c.sink.Target == "":
		return usageError{errors.New("--out is required in local mode, or a --sink: the embedded Redis, and every URL it holds, is gone once the run ends")}
	case c.queue == "":
		return usageError{errors.New("--queue: must not be empty")}
	case c.idColumn == "" && c.dbURL == "":
		return usageError{errors.New("--id-column: must not be empty")}
	case local && c.wait:
		return usageError{errors.New("--wait follows a fleet campaign: it needs --redis-url (local mode always runs to the end)")}
	case !local && c.sandbox:
		return usageError{errors.New("--sandbox serves the API in-process for local mode, but a Redis URL is set (--redis-url or REDIS_URL): add --local to run in-process, or run cmd/sandbox and point the workers at it")}
	case !local && c.out != "" && !c.wait:
		return usageError{errors.New("--out in fleet mode needs --wait (the results exist once the workers are done)")}
	case c.sbFail != "" && !c.sandbox:
		return usageError{errors.New("--sandbox-fail needs --sandbox")}
	case c.concurrency < 1:
		return usageError{fmt.Errorf("--concurrency %d: must be at least 1", c.concurrency)}
	case c.checkpoint < 0:
		return usageError{fmt.Errorf("--checkpoint %s: must be 0 (only at the end) or more", c.checkpoint)}
	case c.workers < 1:
		return usageError{fmt.Errorf("--workers %d: must be at least 1", c.workers)}
	case c.rate < 0:
		return usageError{fmt.Errorf("--rate %v: must be 0 (no limit) or more", c.rate)}
	case c.maxRetry < 1:
		return usageError{fmt.Errorf("--max-retry %d: must be at least 1", c.maxRetry)}
	case c.deadline < 0:
		return usageError{fmt.Errorf("--deadline %s: must be positive", c.deadline)}
	}
	if c.sbFail != "" {
		if _, err := sandbox.ParseFaults(c.sbFail); err != nil {
			return usageError{fmt.Errorf("--sandbox-fail: %w", err)}
		}
	}
	return c.loadAPI(local && c.sandbox)
}

// loadAPI completes the client settings. The in-process sandbox needs no
// key, nor do the commands that only touch Redis.
func (c *config) loadAPI(sandboxed bool) error {
	var err error
	withoutKey := sandboxed || c.redisURL != ""
	if c.api, err = c.apiFlags.Config(withoutKey); err != nil {
		return usageError{err}
	}
	if c.redisURL == "" && c.api.Timeout >= tasks.TaskTimeout {
		return usageError{fmt.Errorf("--timeout %s: must be shorter than the task timeout %s (one run of a task: the rate-limit wait, the call and storing its result)", c.api.Timeout, tasks.TaskTimeout)}
	}
	return nil
}

// shutdownMargin is how much longer than one call the in-process workers'
// shutdown budget is, for storing the result of a call that ends just in
// time.
const shutdownMargin = 5 * time.Second

// localShutdownTimeout is the in-process workers' shutdown budget: the
// worker's default, or longer when --timeout lets one call run longer.
func localShutdownTimeout(callTimeout time.Duration) time.Duration {
	return max(worker.DefaultShutdownTimeout, callTimeout+shutdownMargin)
}

func (c *config) validateQuery() error {
	switch {
	case !sqldb.IsURL(c.dbURL):
		return usageError{errors.New("--db-url: use postgres://, postgresql:// or mysql://user:pass@host:port/db")}
	case strings.TrimSpace(c.query) == "":
		return usageError{errors.New("--db-url needs --query, the SELECT that yields the profiles")}
	case c.queryTimeout <= 0:
		return usageError{fmt.Errorf("--query-timeout %s: must be positive", c.queryTimeout)}
	}
	if err := source.CheckQuery(c.query); err != nil {
		return usageError{fmt.Errorf("--query: %w", err)}
	}
	return nil
}

// inputName names the input in messages and in the default campaign name.
func (c *config) inputName() string {
	if c.dbURL != "" {
		return "query"
	}
	return c.csvPath
}

// inputUnit is what a problem's position counts: a file's lines or a
// query's rows.
func (c *config) inputUnit() string {
	if c.dbURL != "" {
		return "row"
	}
	return "line"
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// samePath reports whether two paths name the same file.
func samePath(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

var nonName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// defaultCampaign names a campaign after its input and the UTC date, so
// that running the same file again the same day continues one campaign.
func defaultCampaign(path string, now time.Time) string {
	base := "stdin"
	if path != "-" {
		base = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	base = strings.Trim(nonName.ReplaceAllString(base, "-"), "-._")
	if base == "" {
		base = "campaign"
	}
	if len(base) > 100 {
		base = base[:100]
	}
	return base + "-" + now.UTC().Format("2006-01-02")
}

// dateToken in a campaign name stands for the UTC date, so that one
// command line run daily from cron is one campaign a day, and a second run
// the same day continues it (the task id is campaign + profile).
const dateToken = "{date}"

// expandDate replaces every dateToken in name with now's UTC date,
// 2006-01-02.
func expandDate(name string, now time.Time) string {
	return strings.ReplaceAll(name, dateToken, now.UTC().Format(time.DateOnly))
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
