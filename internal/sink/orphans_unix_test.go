//go:build unix

package sink

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
)

// helperEnv names the output a re-run of the test binary writes and then
// holds open until it is killed: a writer killed mid-checkpoint.
const helperEnv = "ENROLLQ_SINK_TEST_WRITER"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		f, err := Create(path, nil)
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(1)
		}
		f.Write(nil, campaign.Result{Status: campaign.StatusCreated, URL: "https://example.com/secret",
			ExpiresAt: time.Now().Add(time.Hour)}, "uprof_x")
		f.bw.Flush()
		os.Stdout.WriteString("ready\n")
		select {} // until killed
	}
	os.Exit(m.Run())
}

// startWriter runs a writer of path in another process, waits until its
// temporary file holds a row, and dates that file back past orphanMinAge.
func startWriter(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	before := tempFiles(t, path)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("writer said %q, %v; want ready", line, err)
	}
	old := time.Now().Add(-2 * orphanMinAge)
	for _, name := range tempFiles(t, path) {
		if !slices.Contains(before, name) {
			os.Chtimes(filepath.Join(filepath.Dir(path), name), old, old)
		}
	}
	return cmd
}

// tempFiles lists the names of path's temporary files.
func tempFiles(t *testing.T, path string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(filepath.Dir(path), tempPattern(path)))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}

// TestCreateRemovesWhatKilledWritersLeft: the temporary file (holding a
// URL) of a writer killed with SIGKILL goes when the output is next
// created; that of a live writer, in another process or in this one, stays
// however long it has gone unwritten, and so do a new unlocked one (a
// writer between its CreateTemp and its lock) and other outputs' files.
func TestCreateRemovesWhatKilledWritersLeft(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "out.csv")

	other := filepath.Join(dir, ".other.csv.1.tmp")
	young := filepath.Join(dir, ".out.csv.2.tmp")
	for _, p := range []string{other, young} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * orphanMinAge)
	os.Chtimes(other, old, old)

	// This process's own open output, unwritten for long (a long local
	// run holds it from its start).
	mine, err := Create(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Abort()
	os.Chtimes(mine.tmp.Name(), old, old)

	alive := startWriter(t, path)
	withAlive := tempFiles(t, path)
	killed := startWriter(t, path)
	var killedName string
	for _, n := range tempFiles(t, path) {
		if !slices.Contains(withAlive, n) {
			killedName = n
		}
	}
	if killedName == "" {
		t.Fatal("the second writer made no temporary file")
	}
	killed.Process.Kill()
	killed.Wait()

	f, err := Create(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Abort()

	got := tempFiles(t, path)
	if slices.Contains(got, killedName) {
		t.Errorf("the killed writer's %s remains; want it removed", killedName)
	}
	for _, name := range withAlive { // this process's, the live writer's, the young one
		if !slices.Contains(got, name) {
			t.Errorf("%s was removed; want it kept (temporary files now: %v)", name, got)
		}
	}
	if len(withAlive) != 3 {
		t.Errorf("before the kill: %v, want 3 temporary files (this process's, the live writer's, the young one)", withAlive)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another output's temporary file: %v, want it kept", err)
	}
	if alive.ProcessState != nil {
		t.Error("the live writer exited")
	}
}
