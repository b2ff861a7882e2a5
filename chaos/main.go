// Command chaos is enrollq's chaos suite. It builds the commands, starts
// real workers, the sandbox API and Redis as separate processes, breaks
// them in six ways (kill -9, a wrong key, permanent 400s, SIGTERM, a Redis
// restart, a storm of transient faults) and prints one table: for each
// scenario the profiles, the lost ones, the duplicate rows, the API calls
// beyond one per profile, the wall time and whether the scenario's own
// criterion held.
//
//	go run ./chaos                    # all scenarios, about 5 minutes
//	go run ./chaos -only fail400,faults
//
// It uses db 13 of the Redis at 127.0.0.1:6379 (only its own keys, removed
// afterwards) and a private redis-server for the restart scenario. Every
// process it starts ends with it, on ^C too.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults for the flags.
const (
	defaultRedisURL = "redis://127.0.0.1:6379/13"
	requiredDB      = 13
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	redisURL    string
	redisServer string
	only        []string
	ref         string
	keep        bool
	verbose     bool
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var only string
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.redisURL, "redis-url", defaultRedisURL, "shared Redis for the scenarios (loopback, db 13 only)")
	fs.StringVar(&c.redisServer, "redis-server", "redis-server", "redis-server binary for the restart scenario")
	fs.StringVar(&only, "only", "", "comma-separated scenarios to run (default: all): "+strings.Join(scenarioNames(), ","))
	fs.StringVar(&c.ref, "ref", "", "build the commands from this git `commit` (git archive) instead of the working tree")
	fs.BoolVar(&c.keep, "keep", false, "keep the scratch directory (logs, inputs, results)")
	fs.BoolVar(&c.verbose, "v", false, "log every process started")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for name := range strings.SplitSeq(only, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if !slices.Contains(scenarioNames(), name) {
			return c, fmt.Errorf("-only: unknown scenario %q (known: %s)", name, strings.Join(scenarioNames(), ","))
		}
		c.only = append(c.only, name)
	}
	return c, c.validate()
}

// validate keeps the suite on loopback and on db 13 of the shared Redis.
func (c config) validate() error {
	opts, err := redis.ParseURL(c.redisURL)
	if err != nil {
		return fmt.Errorf("-redis-url: %w", err)
	}
	host := opts.Addr
	if i := strings.LastIndex(host, ":"); i >= 0 {
		host = host[:i]
	}
	if host != "127.0.0.1" && host != "localhost" {
		return fmt.Errorf("-redis-url: %s is not on 127.0.0.1", opts.Addr)
	}
	if opts.DB != requiredDB {
		return fmt.Errorf("-redis-url: db %d; the suite uses db %d only", opts.DB, requiredDB)
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	level := slog.LevelInfo
	if cfg.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	results, err := runSuite(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 1
	}
	printTable(stdout, results)
	for _, r := range results {
		if !r.pass {
			return 1
		}
	}
	return 0
}

// runSuite builds the commands once and runs the scenarios one after the
// other. Every process it started is dead when it returns.
func runSuite(ctx context.Context, cfg config, log *slog.Logger) ([]result, error) {
	dir, err := os.MkdirTemp("", "enrollq-chaos-")
	if err != nil {
		return nil, err
	}
	if cfg.keep {
		log.Info("scratch directory kept", "dir", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	redisServer, err := exec.LookPath(cfg.redisServer)
	if err != nil {
		return nil, fmt.Errorf("-redis-server: %w", err)
	}

	h := &harness{
		bin: filepath.Join(dir, "bin"), dir: dir, redisURL: cfg.redisURL, redisServer: redisServer,
		runID: strconv.FormatInt(time.Now().UnixMilli()%(36*36*36*36*36*36), 36),
		procs: &procSet{}, log: log,
	}
	defer h.procs.killAll()

	if err := build(ctx, h.bin, cfg.ref, log); err != nil {
		return nil, err
	}

	var results []result
	for _, sc := range scenarios {
		if len(cfg.only) > 0 && !slices.Contains(cfg.only, sc.name) {
			continue
		}
		if ctx.Err() != nil {
			return results, fmt.Errorf("interrupted before %s", sc.name)
		}
		r := h.runScenario(ctx, sc)
		log.Info("scenario done", "scenario", sc.name, "pass", r.pass, "wall", r.wall.Round(100*time.Millisecond),
			"detail", strings.Join(r.detail, "; "))
		results = append(results, r)
	}
	if ctx.Err() != nil {
		return results, errors.New("interrupted")
	}
	return results, nil
}

// build compiles the commands into dir, once: from the working tree, or
// from a git commit exported beside dir.
func build(ctx context.Context, dir, ref string, log *slog.Logger) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	if ref != "" {
		if root, err = exportRef(ctx, root, ref, filepath.Join(filepath.Dir(dir), "src")); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator), "./cmd/...")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/...: %w\n%s", err, out)
	}
	for _, name := range []string{"enqueue", "worker", "sandbox"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("build produced no %s: %w", name, err)
		}
	}
	log.Info("built commands", "dir", dir, "ref", ref, "took", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// exportRef writes the tree of commit ref into dst (git archive | tar),
// leaving the repository as it is.
func exportRef(ctx context.Context, root, ref, dst string) (string, error) {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return "", err
	}
	archive := exec.CommandContext(ctx, "git", "archive", "--format=tar", ref)
	archive.Dir = root
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dst)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	var stderr strings.Builder
	archive.Stderr, untar.Stderr = &stderr, &stderr
	if err := untar.Start(); err != nil {
		return "", fmt.Errorf("tar: %w", err)
	}
	if err := archive.Run(); err != nil {
		untar.Wait()
		return "", fmt.Errorf("git archive %s: %w: %s", ref, err, stderr.String())
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("tar: %w: %s", err, stderr.String())
	}
	return dst, nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run the suite from inside the enrollq module (go run ./chaos)")
	}
	return filepath.Dir(gomod), nil
}

// result is one line of the table.
type result struct {
	name       string
	profiles   int
	lost       int   // -1: unknown
	dups       int   // -1: unknown
	extraCalls int64 // sandbox requests - profiles
	callsKnown bool
	wall       time.Duration
	pass       bool
	detail     []string
}

// runScenario runs one scenario within its time limit and always cleans up
// after it.
func (h *harness) runScenario(ctx context.Context, sc scenario) result {
	start := time.Now()
	r := result{name: sc.name, lost: -1, dups: -1}
	sctx, cancel := context.WithTimeout(ctx, sc.limit)
	defer cancel()

	h.log.Info("scenario start", "scenario", sc.name, "limit", sc.limit)
	e, err := h.newEnv(sctx, sc.name, h.redisURL)
	if err == nil {
		err = sc.run(sctx, e, &r)
		if err != nil && r.lost < 0 {
			e.accountFromStore(context.WithoutCancel(ctx), &r)
		}
		e.close(context.WithoutCancel(ctx))
	}
	r.wall = time.Since(start)
	if err != nil {
		r.pass = false
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("timed out after %s: %w", sc.limit, err)
		}
		r.detail = append(r.detail, "ERROR: "+err.Error())
	}
	return r
}

func printTable(w io.Writer, results []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPROFILES\tLOST\tDUP ROWS\tEXTRA CALLS\tWALL\tRESULT\tDETAIL")
	for _, r := range results {
		verdict := "FAIL"
		if r.pass {
			verdict = "PASS"
		}
		calls := "-"
		if r.callsKnown {
			calls = strconv.FormatInt(r.extraCalls, 10)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.profiles,
			unknown(r.lost), unknown(r.dups), calls,
			fmt.Sprintf("%.1fs", r.wall.Seconds()), verdict, strings.Join(r.detail, "; "))
	}
	tw.Flush()
}

func unknown(n int) string {
	if n < 0 {
		return "-"
	}
	return strconv.Itoa(n)
}
