//go:build unix

package sink

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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

// startWriter runs a writer of path in another process and waits until
// its temporary file holds a row. It returns the process and the name of
// that file.
func startWriter(t *testing.T, path string) (*exec.Cmd, string) {
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
	for _, name := range tempFiles(t, path) {
		if !slices.Contains(before, name) {
			return cmd, name
		}
	}
	t.Fatal("the writer made no temporary file")
	return nil, ""
}

// tempFiles lists the names of path's temporary files.
func tempFiles(t *testing.T, path string) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(filepath.Dir(path), tempPattern(path)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range matches {
		if name := filepath.Base(m); isTempOf(name, path) {
			names = append(names, name)
		}
	}
	return names
}

// TestCreateRefusesALiveWriter: while another process writes an output,
// Create of it fails with ErrBusy and leaves that writer's file alone;
// once the writer is killed (SIGKILL, no clean-up of its own), Create
// takes the output and removes the file it left, which holds a URL.
// Another output's temporary file stays.
func TestCreateRefusesALiveWriter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "out.csv")
	other := filepath.Join(dir, ".out.csv.old.csv.1.tmp") // out.csv.old.csv's, a name that starts with out.csv's
	if err := os.WriteFile(other, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	writer, left := startWriter(t, path)
	if _, err := Create(path, nil); !errors.Is(err, ErrBusy) {
		t.Fatalf("Create while another process writes: err %v, want ErrBusy", err)
	}
	link := filepath.Join(dir, "link.csv")
	if err := os.Symlink("out.csv", link); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(link, nil); !errors.Is(err, ErrBusy) {
		t.Errorf("Create of a link to the output while another process writes it: err %v, want ErrBusy", err)
	}
	if got := tempFiles(t, path); !slices.Equal(got, []string{left}) {
		t.Errorf("temporary files after the refused Create: %v, want only the writer's %s", got, left)
	}

	writer.Process.Kill()
	writer.Wait()
	f, err := Create(path, nil)
	if err != nil {
		t.Fatalf("Create after the writer was killed: %v", err)
	}
	defer f.Abort()
	if got := tempFiles(t, path); slices.Contains(got, left) || len(got) != 1 {
		t.Errorf("temporary files: %v, want only the new File's (the killed writer's %s removed)", got, left)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another output's temporary file: %v, want it kept", err)
	}
}

// TestSiblingSharesTheLock: a run that holds its output open writes
// checkpoints of it (Sibling) without removing its own file; the output
// is free again once every File of it is done.
func TestSiblingSharesTheLock(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "out.csv")
	f, err := Create(path, []string{"email"})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := f.Sibling()
	if err != nil {
		t.Fatalf("Sibling: %v", err)
	}
	if err := cp.Write([]string{"a@example.com"}, campaign.Result{}, "uprof_a"); err != nil {
		t.Fatal(err)
	}
	if err := cp.Commit(); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if _, err := os.Stat(f.tmp.Name()); err != nil {
		t.Fatalf("the run's own file after a checkpoint: %v, want it kept", err)
	}
	if b, _ := os.ReadFile(path); !strings.HasPrefix(string(b), "email,user_profile_id,") || !strings.Contains(string(b), "a@example.com") {
		t.Errorf("checkpoint wrote %q", b)
	}
	// One writer an output, in this process too: a second Create is not
	// a Sibling.
	if _, err := Create(path, nil); !errors.Is(err, ErrBusy) {
		t.Errorf("a second Create while the output is held: err %v, want ErrBusy", err)
	}
	if err := f.Commit(); err != nil {
		t.Fatalf("final write: %v", err)
	}
	if got := tempFiles(t, path); len(got) != 0 {
		t.Errorf("temporary files after both writes: %v, want none", got)
	}
	again, err := Create(path, nil)
	if err != nil {
		t.Fatalf("Create once every File is done: %v", err)
	}
	again.Abort()
}
