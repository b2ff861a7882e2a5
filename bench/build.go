package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// buildTimeout bounds building the four commands.
const buildTimeout = 5 * time.Minute

// binaries are the programs under test, built once per run.
type binaries struct {
	sandbox, worker, enqueue, export string
	self                             string // this program, for noop-worker

	// source names what was built: a commit, and whether uncommitted
	// changes were in the tree.
	source string
}

// buildBinaries builds cmd/sandbox, cmd/worker, cmd/enqueue and cmd/export
// into dir:
// from the working tree, or with rev set from that git revision alone, so
// that edits in progress in the tree do not leak into the measurement.
func buildBinaries(ctx context.Context, dir, rev string, log io.Writer) (binaries, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()

	self, err := os.Executable()
	if err != nil {
		return binaries{}, fmt.Errorf("find the bench binary for noop-worker: %w", err)
	}
	bin := binaries{
		sandbox: filepath.Join(dir, "sandbox"),
		worker:  filepath.Join(dir, "worker"),
		enqueue: filepath.Join(dir, "enqueue"),
		export:  filepath.Join(dir, "export"),
		self:    self,
	}

	root, err := gitOutput(ctx, "", "rev-parse", "--show-toplevel")
	if err != nil {
		return bin, fmt.Errorf("find the repository: %w", err)
	}
	srcDir := root
	if rev != "" {
		srcDir = filepath.Join(dir, "src")
		if bin.source, err = exportRev(ctx, root, rev, srcDir); err != nil {
			return bin, err
		}
	} else {
		bin.source = describeTree(ctx, root)
	}

	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"./cmd/sandbox", "./cmd/worker", "./cmd/enqueue", "./cmd/export")
	cmd.Dir = srcDir
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return bin, fmt.Errorf("go build the commands in %s: %w", srcDir, err)
	}
	return bin, nil
}

// exportRev writes the tree of rev into dir and returns its commit.
func exportRev(ctx context.Context, root, rev, dir string) (string, error) {
	commit, err := gitOutput(ctx, root, "rev-parse", "--verify", rev+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("--rev %s: %w", rev, err)
	}
	cmd := exec.CommandContext(ctx, "git", "archive", "--format=tar", commit)
	cmd.Dir = root
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git archive %s: %w: %s", rev, err, strings.TrimSpace(stderr.String()))
	}
	if err := untar(&out, dir); err != nil {
		return "", fmt.Errorf("unpack %s: %w", rev, err)
	}
	return short(commit), nil
}

// untar writes the regular files and directories of a tar stream under
// dir; it refuses names that would land outside it.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("archive entry %q leaves the directory", h.Name)
		}
		path := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o755)
		case tar.TypeReg:
			err = writeFile(path, tr, os.FileMode(h.Mode)&0o755)
		}
		if err != nil {
			return err
		}
	}
}

func writeFile(path string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode|0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// describeTree names the working tree's commit, and says so when it has
// uncommitted changes outside bench/.
func describeTree(ctx context.Context, root string) string {
	commit, err := gitOutput(ctx, root, "rev-parse", "HEAD")
	if err != nil {
		return "working tree (commit unknown)"
	}
	status, err := gitOutput(ctx, root, "status", "--porcelain", "--", ".", ":!bench")
	if err != nil || status != "" {
		return "working tree at " + short(commit) + " with uncommitted changes"
	}
	return "commit " + short(commit)
}

// gitOutput runs git in dir (the current directory when empty) and returns
// its trimmed output.
func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
