package sink

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// orphanMinAge is how old a temporary file must be before it can be taken
// for a dead writer's: it covers the moment between a writer's CreateTemp
// and its lock, in which the file is new and not locked yet.
const orphanMinAge = 10 * time.Second

// tempPattern is the os.CreateTemp pattern of path's temporary files.
func tempPattern(path string) string { return "." + filepath.Base(path) + ".*.tmp" }

// removeOrphans removes the temporary files of path that writers killed
// before their rename (kill -9 in the middle of a checkpoint) left beside
// it: they hold bearer URLs, and nothing else would remove them. A writer
// holds a lock on its temporary file while it is open (Create), and the
// system lets it go when the writer dies, so a file whose lock can be
// taken has no writer. Files of live writers, in this process or another,
// stay. It is best effort: a file it cannot open, lock or remove stays.
func removeOrphans(path string, now time.Time) {
	dir := filepath.Dir(path)
	prefix, suffix, _ := strings.Cut(tempPattern(path), "*")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || len(name) <= len(prefix)+len(suffix) ||
			!strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) < orphanMinAge {
			continue
		}
		removeIfUnlocked(filepath.Join(dir, name))
	}
}

// removeIfUnlocked removes the file at p when no one holds its lock.
func removeIfUnlocked(p string) {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if ok, err := tryLock(f); err == nil && ok {
		os.Remove(p)
	}
}
