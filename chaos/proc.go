package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procSet owns every process the suite starts, so that all of them end
// when the suite does, however it ends.
type procSet struct {
	mu    sync.Mutex
	procs []*proc
}

// proc is one child process. Its stdout and stderr go to one log file.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	log     *os.File
	started time.Time

	done     chan struct{} // closed when the process has exited
	waitErr  error         // valid once done is closed
	exitedAt time.Time     // valid once done is closed
}

// spec says how to start a process.
type spec struct {
	name    string
	bin     string
	args    []string
	env     []string // added to a copy of os.Environ without enrollq's variables
	logPath string

	// onStdout, when set, sees every line of standard output.
	onStdout func(line string)
}

// ownVariables are the environment variables the suite sets itself, so that
// the caller's environment cannot point a child at another Redis or API.
var ownVariables = []string{"REDIS_URL=", "ANTHROPIC_API_KEY=", "ANTHROPIC_BASE_URL=", "ANTHROPIC_WORKSPACE_ID="}

func childEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		own := false
		for _, prefix := range ownVariables {
			if strings.HasPrefix(kv, prefix) {
				own = true
				break
			}
		}
		if !own {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// start runs s. The process is killed when ctx ends, and by killAll.
func (ps *procSet) start(ctx context.Context, s spec) (*proc, error) {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	cmd := exec.CommandContext(ctx, s.bin, s.args...)
	cmd.Env = childEnv(s.env)
	cmd.Stderr = logFile
	cmd.Stdout = logFile
	if s.onStdout != nil {
		cmd.Stdout = &lineWriter{w: logFile, each: s.onStdout}
	}
	// A process group of its own: a ^C at the terminal reaches the suite
	// only, and the suite ends its children itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second

	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	p := &proc{name: s.name, logPath: s.logPath, cmd: cmd, log: logFile, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		p.exitedAt = time.Now()
		logFile.Close()
		close(p.done)
	}()

	ps.mu.Lock()
	ps.procs = append(ps.procs, p)
	ps.mu.Unlock()
	return p, nil
}

// killAll kills every process still running, by its pid, and waits for it.
func (ps *procSet) killAll() {
	ps.mu.Lock()
	procs := append([]*proc(nil), ps.procs...)
	ps.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the process if it still runs.
func (p *proc) signal(sig syscall.Signal) error {
	if !p.running() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s to %s (pid %d): %w", sig, p.name, p.pid(), err)
	}
	return nil
}

func (p *proc) kill() { _ = p.signal(syscall.SIGKILL) }

// wait waits up to limit for the process to exit and reports whether it
// did.
func (p *proc) wait(ctx context.Context, limit time.Duration) bool {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// stop asks the process to end (SIGTERM), and kills it after grace.
func (p *proc) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	_ = p.signal(syscall.SIGTERM)
	if !p.wait(context.Background(), grace) {
		p.kill()
		p.wait(context.Background(), 5*time.Second)
	}
}

// exitCode is the exit status, or -1 while running or after a signal.
func (p *proc) exitCode() int {
	if p.running() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// exitDesc says how the process ended, for the report.
func (p *proc) exitDesc() string {
	if p.running() {
		return "running"
	}
	if p.waitErr == nil {
		return "exit 0"
	}
	return p.waitErr.Error()
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lineWriter passes output through to w and hands each complete line to
// each.
type lineWriter struct {
	w    io.Writer
	each func(string)
	buf  []byte
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.each(strings.TrimRight(string(l.buf[:i]), "\r"))
		l.buf = l.buf[i+1:]
	}
	return l.w.Write(b)
}
