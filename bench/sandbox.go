package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/enrollq/enrollq/internal/sandbox"
)

// listenTimeout bounds the wait for the sandbox's listening line.
const listenTimeout = 15 * time.Second

// sandboxLimit is the stand-in API's configuration in a scenario.
type sandboxLimit struct {
	rate    float64 // requests a second; 0: none
	burst   int
	latency time.Duration
	fail    string // --fail spec; empty: none
}

func (l sandboxLimit) args() []string {
	args := []string{"--addr", "127.0.0.1:0", "--log-level", "warn"}
	if l.rate > 0 {
		args = append(args, "--rate", fmt.Sprint(l.rate), "--burst", fmt.Sprint(l.burst))
	}
	if l.latency > 0 {
		args = append(args, "--latency", l.latency.String())
	}
	if l.fail != "" {
		args = append(args, "--fail", l.fail)
	}
	return args
}

// runningSandbox is a sandbox process and the address it serves.
type runningSandbox struct {
	*proc
	baseURL string
}

// startSandbox starts the sandbox on a free loopback port and waits for
// its "listening on http://ADDR" line.
func (b *bench) startSandbox(ctx context.Context, scenario string, l sandboxLimit) (*runningSandbox, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	var env []string
	if b.cfg.SandboxProcs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", b.cfg.SandboxProcs))
	}
	p, err := spawn(spec{
		name: "sandbox", bin: b.bin.sandbox, args: l.args(), env: childEnv(env...),
		stdout: w, logPath: filepath.Join(b.dir, scenario+"-sandbox.log"),
	})
	w.Close() // the child holds its own copy
	if err != nil {
		r.Close()
		return nil, err
	}

	lines := make(chan string, 1)
	go func() {
		defer r.Close()
		br := bufio.NewReader(r)
		line, _ := br.ReadString('\n')
		lines <- line
		io.Copy(io.Discard, br)
	}()

	select {
	case line := <-lines:
		base, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
		if !ok || !strings.HasPrefix(base, "http://127.0.0.1:") {
			p.kill()
			return nil, fmt.Errorf("sandbox said %q, want listening on http://127.0.0.1:PORT (see %s-sandbox.log)", line, scenario)
		}
		return &runningSandbox{proc: p, baseURL: base}, nil
	case <-time.After(listenTimeout):
		p.kill()
		return nil, fmt.Errorf("sandbox printed no listening line within %s", listenTimeout)
	case <-ctx.Done():
		p.kill()
		return nil, ctx.Err()
	}
}

// stats fetches GET /_sandbox/stats.
func (s *runningSandbox) stats(ctx context.Context) (sandbox.Stats, error) {
	return sandbox.FetchStats(ctx, s.baseURL)
}

// arrivalRate is the rate the sandbox saw: requests after the first over
// the time from the first to the last arrival.
func arrivalRate(st sandbox.Stats) float64 {
	span := st.LastAt.Sub(st.FirstAt).Seconds()
	if st.Requests < 2 || span <= 0 {
		return 0
	}
	return float64(st.Requests-1) / span
}

// statusCount adds up the answers whose label starts with prefix ("5"
// for every 5xx).
func statusCount(st sandbox.Stats, prefix string) int64 {
	var n int64
	for label, c := range st.ByStatus {
		if strings.HasPrefix(label, prefix) {
			n += c
		}
	}
	return n
}
