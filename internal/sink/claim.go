package sink

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ErrBusy is the error Create returns for an output that another process
// is writing now.
var ErrBusy = errors.New("another run is writing it now; let that run finish, or write elsewhere")

// tempPattern is the os.CreateTemp pattern of path's temporary files.
func tempPattern(path string) string { return "." + filepath.Base(path) + ".*.tmp" }

// lockPath is the file whose lock a writer of path holds: .NAME.lock
// beside it. It is left in place (empty) when the writer is done, for a
// lock file removed could be locked by two writers at once.
func lockPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".lock")
}

// claim is a writer's hold on an output: a lock on its lock file, taken
// by Create and shared with the File's Siblings, let go when the last of
// them is committed or aborted (or the process dies).
type claim struct {
	mu   sync.Mutex
	lock *os.File // nil where the file system takes no locks
	refs int
}

// claimOutput takes path's lock, or fails with ErrBusy when another
// process holds it. Holding it, it removes the temporary files that
// writers killed before their rename (kill -9 in the middle of a write)
// left beside path: they hold bearer URLs, and no live writer can own
// them. Where the lock cannot be had (a file system that takes no locks,
// a lock file this user may not open), it claims nothing and removes
// nothing: the write goes on as it would without the lock.
func claimOutput(path string) (*claim, error) {
	// Empty and read-only, so that any user who may write the output can
	// lock it, whoever made it.
	lf, err := os.OpenFile(lockPath(path), os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return &claim{refs: 1}, nil
	}
	locked, err := tryLock(lf)
	switch {
	case err != nil:
		lf.Close()
		return &claim{refs: 1}, nil
	case !locked:
		lf.Close()
		return nil, fmt.Errorf("output %s: %w", path, ErrBusy)
	}
	removeOrphans(path)
	return &claim{lock: lf, refs: 1}, nil
}

// share adds a File to the claim.
func (c *claim) share() {
	c.mu.Lock()
	c.refs++
	c.mu.Unlock()
}

// release lets go of one File's share; the last one unlocks.
func (c *claim) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs--; c.refs == 0 && c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// removeOrphans removes path's temporary files. It is best effort: a
// file it cannot remove stays.
func removeOrphans(path string) {
	dir := filepath.Dir(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Type().IsRegular() && isTempOf(e.Name(), path) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// isTempOf reports whether name is one of path's temporary files:
// .NAME.<digits>.tmp, as os.CreateTemp names them, and not another
// output's (.NAME.old.csv.<digits>.tmp is r.csv.old.csv's, not r.csv's).
func isTempOf(name, path string) bool {
	// os.CreateTemp puts the random part at the pattern's last '*'.
	pattern := tempPattern(path)
	star := strings.LastIndex(pattern, "*")
	prefix, suffix := pattern[:star], pattern[star+1:]
	random, ok := strings.CutPrefix(name, prefix)
	if random, ok = strings.CutSuffix(random, suffix); !ok || random == "" {
		return false
	}
	for _, c := range random {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
