package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// curlCommand is what a user would write instead of enrollq: one curl per
// id, 16 at a time, no retry. xargs appends the URL.
func curlCommand(parallel int, apiKey string) []string {
	return []string{
		"xargs", "-P", fmt.Sprint(parallel), "-n", "1",
		"curl", "-s", "-o", "/dev/null", "-w", `%{http_code} %{url_effective}\n`, "-X", "POST",
		"-H", "x-api-key: " + apiKey,
		"-H", "anthropic-version: 2023-06-01",
		"-H", "anthropic-beta: user-profiles-2026-03-24",
	}
}

// runCurl runs the peer baseline: the curl loop over the ids of the 50
// req/s scenarios, against a sandbox with the same limit and latency.
func (b *bench) runCurl(ctx context.Context) (fleetResult, error) {
	s := b.fleetScenario(scLimit50Three)
	s.name = scCurl
	res := fleetResult{spec: s, client: fmt.Sprintf("curl -P %d", b.cfg.CurlParallel)}
	if _, err := exec.LookPath("curl"); err != nil {
		res.note = "skipped: curl not found"
		return res, nil
	}
	xargs, err := exec.LookPath("xargs")
	if err != nil {
		res.note = "skipped: xargs not found"
		return res, nil
	}

	sb, err := b.startSandbox(ctx, s.name, s.limit)
	if err != nil {
		return res, err
	}
	defer sb.kill()

	var urls bytes.Buffer
	for i := range s.profiles {
		fmt.Fprintf(&urls, "%s/v1/user_profiles/%s/enrollment_url\n", sb.baseURL, profileID(i))
	}
	argv := curlCommand(b.cfg.CurlParallel, b.names(s.name).apiKey)
	var out bytes.Buffer
	p, err := spawn(spec{
		name: "curl loop", bin: xargs, args: argv[1:], env: childEnv(),
		stdin: &urls, stdout: &out, logPath: filepath.Join(b.dir, s.name+"-curl.log"),
	})
	if err != nil {
		return res, err
	}
	defer p.kill()
	timeout := time.Duration(float64(s.ideal())*b.cfg.TimeoutFactor) + time.Minute
	if err := p.wait(ctx, timeout); err != nil {
		return res, fmt.Errorf("%w (see %s-curl.log)", err, s.name)
	}
	res.wall = p.ended.Sub(p.started)

	if res.stats, err = sb.stats(ctx); err != nil {
		return res, err
	}
	if err := sb.stop(); err != nil {
		return res, err
	}
	res.rate, res.okRate = arrivalRate(res.stats), okRate(res.stats)
	res.status5 = statusCount(res.stats, "5")
	return res, res.countCurl(&out)
}

// countCurl reads the loop's "CODE URL" lines: the ids that got a 200 are
// the rows a user would have; every other id is lost, since the loop does
// not retry.
func (r *fleetResult) countCurl(out *bytes.Buffer) error {
	seen := make(map[string]int, r.spec.profiles)
	sc := bufio.NewScanner(out)
	lines := 0
	for sc.Scan() {
		code, url, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			return fmt.Errorf("curl loop printed %q, want CODE URL", sc.Text())
		}
		lines++
		if code != "200" {
			continue
		}
		id := strings.TrimSuffix(url, "/enrollment_url")
		id = id[strings.LastIndexByte(id, '/')+1:]
		seen[id]++
		r.rows++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read the curl loop's output: %w", err)
	}
	if lines != r.spec.profiles {
		r.note = fmt.Sprintf("%d curl lines for %d ids", lines, r.spec.profiles)
	}
	r.lost, r.dup = countLostDup(seen, r.spec.profiles)
	r.failed = r.spec.profiles - len(seen)
	return nil
}
