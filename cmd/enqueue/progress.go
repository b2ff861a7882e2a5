package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressEvery is how often a progress line is printed when the output
// is not a terminal (a log file, a CI job, cron's mail).
const progressEvery = 5 * time.Second

// isTerminal reports whether w is a terminal, where a progress bar that
// redraws itself can be shown.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress shows how far a stage of the run is: done/total, rate and ETA.
// On a terminal it is a bar redrawn in place on barOut; otherwise it is a
// plain line on lineOut every progressEvery. It is safe for concurrent
// use.
type progress struct {
	mu      sync.Mutex
	bar     *progressbar.ProgressBar // nil off a terminal
	barOut  io.Writer
	lineOut io.Writer
	label   string
	unit    string
	total   int64

	start     time.Time
	startDone int64 // done at the first update, so that a re-run's rate counts this run only
	started   bool
	lastLine  time.Time
	printed   bool // a periodic line was printed
	done      int64
	detail    string
}

// newProgress starts a progress display of total units (-1: unknown, a
// spinner with a count and a rate). barOut is the terminal to draw the bar
// on (standard error, so that standard output can be piped), or nil for
// plain lines on lineOut.
func newProgress(barOut, lineOut io.Writer, label, unit string, total int64) *progress {
	p := &progress{barOut: barOut, lineOut: lineOut, label: label, unit: unit, total: total,
		start: time.Now(), lastLine: time.Now()}
	if barOut != nil {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(barOut),
			progressbar.OptionSetDescription(label),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString(unit),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
	return p
}

// set records that done units are done; detail (e.g. "3 failed") is shown
// beside the count.
func (p *progress) set(done int64, detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		p.started, p.startDone, p.start = true, done, time.Now()
	}
	p.done, p.detail = done, detail
	if p.bar != nil {
		if detail != "" {
			p.bar.Describe(p.label + " (" + detail + ")")
		}
		p.bar.Set64(done)
		return
	}
	if time.Since(p.lastLine) >= progressEvery {
		p.lastLine, p.printed = time.Now(), true
		fmt.Fprintln(p.lineOut, p.line())
	}
}

// line is the plain progress line: "minting: 1200/5000 (3 failed),
// 40.0 profiles/s, about 1m35s left".
func (p *progress) line() string {
	s := fmt.Sprintf("%s: %d/%d", p.label, p.done, p.total)
	if p.total < 0 {
		s = fmt.Sprintf("%s: %d %s", p.label, p.done, p.unit)
	}
	if p.detail != "" {
		s += " (" + p.detail + ")"
	}
	elapsed := time.Since(p.start)
	if n := p.done - p.startDone; n > 0 && elapsed > 0 {
		rate := float64(n) / elapsed.Seconds()
		s += fmt.Sprintf(", %.1f %s/s", rate, p.unit)
		if p.total >= 0 {
			left := time.Duration(float64(p.total-p.done) / rate * float64(time.Second))
			s += fmt.Sprintf(", about %s left", left.Round(time.Second))
		}
	}
	return s
}

// note prints a line of its own without tearing the bar.
func (p *progress) note(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Clear()
	}
	fmt.Fprintln(p.lineOut, line)
}

// finish ends the display: the bar is completed or left where it stopped;
// off a terminal, a run long enough to have printed lines gets a last one.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		if p.total < 0 || p.done >= p.total {
			p.bar.Finish()
		} else {
			p.bar.Exit() // interrupted: keep where it stopped
		}
		fmt.Fprintln(p.barOut) // keep the bar's last state on its own line
		return
	}
	if p.printed {
		fmt.Fprintln(p.lineOut, p.line())
	}
}
