package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/sandbox"
)

// syncBuffer is a bytes.Buffer that the server's goroutines may write
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// started is a sandbox that run serves on a free port.
type started struct {
	baseURL string
	stderr  *syncBuffer
	stop    func() error // cancels run and returns its error
}

// start runs the command with args on 127.0.0.1:0 and waits for the
// listening line.
func start(t *testing.T, args ...string) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stdoutR, stdoutW := io.Pipe()
	stderr := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), stdoutW, stderr)
		stdoutW.Close()
	}()

	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("read the listening line: %v (stderr: %s; run: %v)", err, stderr, <-done)
	}
	go io.Copy(io.Discard, stdoutR)
	baseURL, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok || !strings.HasPrefix(baseURL, "http://127.0.0.1:") {
		t.Fatalf("stdout line = %q, want listening on http://127.0.0.1:PORT", line)
	}

	s := &started{baseURL: baseURL, stderr: stderr}
	var once sync.Once
	var runErr error
	s.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("run did not return 10s after cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *started) post(t *testing.T, key string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST",
		s.baseURL+"/v1/user_profiles/uprof_abc/enrollment_url", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Anthropic-Version", "2026-10-21")
	req.Header.Set("Anthropic-Beta", "user-profiles-2026-08-18")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func TestRunServesAndShutsDown(t *testing.T) {
	t.Parallel()
	const key = "sk-cmd-secret-key"
	s := start(t, "--keys", key+",sk-other", "--rate", "100", "--burst", "5",
		"--ttl", "10m", "--not-found", "uprof_gone", "--log-level", "debug")

	res := s.post(t, key)
	if res.StatusCode != http.StatusOK {
		t.Errorf("status = %d, want 200", res.StatusCode)
	}
	if got := res.Header.Get("anthropic-ratelimit-requests-limit"); got != "5" {
		t.Errorf("anthropic-ratelimit-requests-limit = %q, want 5", got)
	}
	var body struct {
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if d := time.Until(body.ExpiresAt); d < 9*time.Minute || d > 10*time.Minute {
		t.Errorf("expires_at is %v ahead, want about 10m", d)
	}
	if got := s.post(t, "sk-unknown").StatusCode; got != http.StatusUnauthorized {
		t.Errorf("unknown key: status = %d, want 401", got)
	}

	stats, err := http.Get(s.baseURL + sandbox.StatsPath)
	if err != nil {
		t.Fatalf("get stats: %v", err)
	}
	defer stats.Body.Close()
	var st sandbox.Stats
	if err := json.NewDecoder(stats.Body).Decode(&st); err != nil {
		t.Fatalf("decode stats: %v", err)
	}
	if st.Requests != 2 || st.ByStatus["200"] != 1 || st.ByStatus["401"] != 1 {
		t.Errorf("stats = %+v, want 2 requests: one 200, one 401", st)
	}

	if err := s.stop(); err != nil {
		t.Errorf("run after cancel: %v, want nil", err)
	}
	logs := s.stderr.String()
	if strings.Contains(logs, key) {
		t.Errorf("log holds the API key:\n%s", logs)
	}
	for _, want := range []string{
		`"msg":"sandbox listening"`,
		`"key_fingerprints":["` + sandbox.Fingerprint(key) + `","` + sandbox.Fingerprint("sk-other") + `"]`,
		`"msg":"request"`,
		`"msg":"sandbox shutting down"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

func TestRunSlowFault(t *testing.T) {
	t.Parallel()
	s := start(t, "--fail", "slow=1", "--slow", "200ms")
	res := s.post(t, "any")
	if res.StatusCode != http.StatusOK {
		t.Errorf("status = %d, want 200 after the stall", res.StatusCode)
	}
	if err := s.stop(); err != nil {
		t.Errorf("run after cancel: %v, want nil", err)
	}
}

func TestRunRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"remote addr", []string{"--addr", "0.0.0.0:8787"},
			`--addr "0.0.0.0:8787" is not a loopback address; pass --allow-remote to listen there`},
		{"all interfaces", []string{"--addr", ":8787"},
			`--addr ":8787" is not a loopback address; pass --allow-remote to listen there`},
		{"bad faults", []string{"--fail", "500=0.7,529=0.7"},
			`--fail: fault "529=0.7": probabilities sum to 1.4 at "529"; want at most 1`},
		{"bad config", []string{"--rate", "-2"},
			"sandbox config: Rate is -2; want a finite number >= 0 (0 means unlimited)"},
		{"bad listed id", []string{"--forbidden", "uprof_ok,nope"},
			`sandbox config: Forbidden[1] is "nope"; want uprof_ followed by letters and digits`},
		{"unknown flag", []string{"--nope"}, "flag provided but not defined: -nope"},
		{"bad log level", []string{"--log-level", "loud"},
			`invalid value "loud" for flag -log-level: slog: level string "loud": unknown name`},
		{"argument", []string{"extra"}, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tc.args, &stdout, &stderr)
			if err == nil {
				t.Fatalf("run: got no error, want %q", tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("run: got %q, want %q", got, tc.want)
			}
			if got := exitCode(err); got != 2 {
				t.Errorf("exit code %d, want 2 (a mistake in the command line)", got)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-h"}, &stdout, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run -h: %v, want %v", err, flag.ErrHelp)
	}
	if !strings.Contains(stderr.String(), "-allow-remote") {
		t.Errorf("usage lacks -allow-remote:\n%s", stderr.String())
	}
}

func TestCheckAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr        string
		allowRemote bool
		ok          bool
	}{
		{"127.0.0.1:8787", false, true},
		{"127.0.0.2:0", false, true},
		{"[::1]:8787", false, true},
		{"localhost:8787", false, true},
		{"0.0.0.0:8787", false, false},
		{"192.168.1.10:8787", false, false},
		{"example.com:8787", false, false},
		{":8787", true, true},
		{"0.0.0.0:8787", true, true},
		{"127.0.0.1", false, false},
	} {
		err := checkAddr(tc.addr, tc.allowRemote)
		if got := err == nil; got != tc.ok {
			t.Errorf("checkAddr(%q, %v) = %v, want ok %v", tc.addr, tc.allowRemote, err, tc.ok)
		}
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	opts, err := parseFlags([]string{
		"--addr", "[::1]:9000", "--keys", "k1, k2,", "--rate", "2.5", "--burst", "4",
		"--latency", "20ms", "--jitter", "5ms", "--ttl", "30m", "--fail", "500=0.1,reset=0.05",
		"--script", "429,ok", "--not-found", "uprof_a", "--bad-request", "uprof_b,uprof_c",
		"--forbidden", "uprof_d", "--disabled", "--workspace-id", "wrkspc_1", "--slow", "3s",
		"--seed", "42", "--log-level", "warn",
	}, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	c := opts.config
	checks := []struct {
		name      string
		got, want any
	}{
		{"addr", opts.addr, "[::1]:9000"},
		{"log level", opts.logLevel, slog.LevelWarn},
		{"keys", c.Keys, []string{"k1", "k2"}},
		{"rate", c.Rate, 2.5},
		{"burst", c.Burst, 4},
		{"latency", c.Latency, 20 * time.Millisecond},
		{"jitter", c.Jitter, 5 * time.Millisecond},
		{"ttl", c.TTL, 30 * time.Minute},
		{"faults", c.Faults.String(), "500=0.1,reset=0.05"},
		{"script", c.Script, []string{"429", "ok"}},
		{"not found", c.NotFound, []string{"uprof_a"}},
		{"bad request", c.BadRequest, []string{"uprof_b", "uprof_c"}},
		{"forbidden", c.Forbidden, []string{"uprof_d"}},
		{"disabled", c.Disabled, true},
		{"workspace", c.WorkspaceID, "wrkspc_1"},
		{"slow", c.SlowDelay, 3 * time.Second},
		{"seed", c.Seed, int64(42)},
	}
	for _, ch := range checks {
		got, gotList := ch.got.([]string)
		want, wantList := ch.want.([]string)
		if gotList && wantList {
			if !slices.Equal(got, want) {
				t.Errorf("%s = %q, want %q", ch.name, got, want)
			}
			continue
		}
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	t.Parallel()
	opts, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	if opts.addr != defaultAddr {
		t.Errorf("addr = %q, want %q", opts.addr, defaultAddr)
	}
	if opts.logLevel != slog.LevelInfo {
		t.Errorf("log level = %v, want %v", opts.logLevel, slog.LevelInfo)
	}
	c := opts.config
	if c.TTL != sandbox.DefaultTTL || c.SlowDelay != sandbox.DefaultSlowDelay || c.Rate != 0 ||
		c.Keys != nil || c.Faults != nil {
		t.Errorf("config = %+v, want the sandbox defaults", c)
	}
}
