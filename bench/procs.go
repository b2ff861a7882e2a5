package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Bounds on the waits around a process.
const (
	// stopBudget is how long a process gets after SIGTERM before SIGKILL:
	// above the worker's 25 s shutdown timeout.
	stopBudget = 30 * time.Second

	// killWait bounds the wait for a killed process to be reaped.
	killWait = 5 * time.Second

	// clockTicks is the unit of utime and stime in /proc/PID/stat
	// (sysconf(_SC_CLK_TCK), 100 on every Linux the bench runs on).
	clockTicks = 100
)

// proc is a child process and what became of it.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time

	done  chan struct{} // closed once the process is reaped
	err   error         // Wait's answer, set before done is closed
	ended time.Time
}

// spec describes a process to start.
type spec struct {
	name string
	bin  string
	args []string
	env  []string

	// stdin, when set, feeds the process; stdout, when set, receives its
	// standard output, which otherwise goes to the log with stderr.
	stdin  io.Reader
	stdout io.Writer

	// logPath receives standard error (and output unless stdout is set).
	logPath string
}

// spawn starts s. The process dies with the bench: it gets SIGKILL if the
// thread that started it exits (best effort; the deferred kills are the
// rule).
func spawn(s spec) (*proc, error) {
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Env = s.env
	cmd.Stdin = s.stdin
	cmd.Stdout = logFile
	if s.stdout != nil {
		cmd.Stdout = s.stdout
	}
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}

	p := &proc{name: s.name, cmd: cmd, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		p.ended = time.Now()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has been reaped.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit by itself, for at most timeout. Past
// it, or when ctx ends, the process is killed and wait returns an error.
func (p *proc) wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.exitError()
	case <-t.C:
		p.kill()
		return fmt.Errorf("%s still running after %s; killed it", p.name, timeout)
	case <-ctx.Done():
		p.kill()
		return fmt.Errorf("%s: %w", p.name, ctx.Err())
	}
}

// exitError is nil for exit code 0, else says how the process ended.
func (p *proc) exitError() error {
	if p.err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", p.name, p.err)
}

// exitCode is the process's exit code once it has exited, -1 before or
// when a signal ended it.
func (p *proc) exitCode() int {
	if !p.exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and waits stopBudget for the process to end, then
// kills it. It returns an error when the process had to be killed.
func (p *proc) stop() error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.kill()
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopBudget):
		p.kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed it", p.name, stopBudget)
	}
}

// kill sends SIGKILL, unless the process is gone, and waits a little for
// it to be reaped.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(killWait):
	}
}

// usage is what a process cost.
type usage struct {
	cpu     time.Duration // user + system
	peakRSS int64         // bytes, the high-water mark of the resident set
}

// liveUsage reads the running process's CPU time and peak RSS from /proc.
func (p *proc) liveUsage() (usage, error) {
	pid := strconv.Itoa(p.pid())
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return usage{}, fmt.Errorf("read usage of %s: %w", p.name, err)
	}
	cpu, err := parseStatCPU(string(stat))
	if err != nil {
		return usage{}, fmt.Errorf("read usage of %s: %w", p.name, err)
	}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return usage{}, fmt.Errorf("read usage of %s: %w", p.name, err)
	}
	hwm, err := parseStatusKB(string(status), "VmHWM")
	if err != nil {
		return usage{}, fmt.Errorf("read usage of %s: %w", p.name, err)
	}
	return usage{cpu: cpu, peakRSS: hwm * 1024}, nil
}

// finalUsage is the exited process's usage from wait4's rusage.
func (p *proc) finalUsage() (usage, error) {
	if !p.exited() {
		return usage{}, fmt.Errorf("usage of %s: still running", p.name)
	}
	ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return usage{}, fmt.Errorf("usage of %s: no rusage on this system", p.name)
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return usage{cpu: cpu, peakRSS: ru.Maxrss * 1024}, nil // Maxrss is in KiB on Linux
}

// parseStatCPU returns utime + stime from the text of /proc/PID/stat.
// The command name (field 2) may hold spaces, so fields are counted from
// the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no ')' after the command name")
	}
	fields := strings.Fields(stat[i+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, fmt.Errorf("/proc stat: %d fields, want more than %d", len(fields), stime)
	}
	var ticks int64
	for _, f := range []string{fields[utime], fields[stime]} {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseStatusKB returns the value in kB of a line such as "VmHWM: 1234 kB"
// of /proc/PID/status.
func parseStatusKB(status, name string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name+":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("/proc status: %s line %q", name, sc.Text())
		}
		return strconv.ParseInt(fields[0], 10, 64)
	}
	return 0, fmt.Errorf("/proc status: no %s line", name)
}

// group is the processes of one scenario, all killed when it ends.
type group []*proc

// killAll kills every process still running.
func (g group) killAll() {
	for _, p := range g {
		p.kill()
	}
}

// stopAll stops every process with SIGTERM, all at once, and returns the
// errors of those that had to be killed.
func stopAll(ps []*proc) error {
	errs := make(chan error, len(ps))
	for _, p := range ps {
		go func() { errs <- p.stop() }()
	}
	var all []error
	for range ps {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// sumUsage reads every running process's usage: CPU added up, the
// largest peak RSS.
func sumUsage(ps []*proc) (usage, error) {
	var total usage
	for _, p := range ps {
		u, err := p.liveUsage()
		if err != nil {
			return total, err
		}
		total.cpu += u.cpu
		total.peakRSS = max(total.peakRSS, u.peakRSS)
	}
	return total, nil
}

// childEnv is the bench's environment without any API or Redis setting of
// the caller's, plus extra: a real key must never reach the sandbox, and
// the children must use the bench's Redis.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "ANTHROPIC_") || strings.HasPrefix(kv, "REDIS_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
