// Package sink writes a campaign's results for an email service to import.
//
// A file's extension picks its format: .csv (RFC 4180, UTF-8, no BOM, CRLF)
// or .jsonl (one JSON object a line). The columns are the input's
// passthrough columns, then Columns. A File is written to a temporary file
// beside its target and renamed into place by Commit, so an import never
// sees half a file; it is created mode 0600, for it holds bearer URLs.
// One process at a time writes an output (see Create).
//
// A URL that has expired by the time it is written is never handed on: its
// row says status "expired" and carries no URL.
//
// Results, fed by the workers as each result is stored rather than written
// at the end, go to a PostgreSQL or MySQL table (Table: one row per
// campaign and profile, the newest URL winning) or to a webhook (Webhook:
// one signed JSON POST per result; behind an Outbox in Redis, retried
// until the receiver takes it).
package sink

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/source"
)

// Columns are the result columns after the passthrough ones. Row fills
// them in this order.
var Columns = source.ResultColumns

// Statuses a row may carry besides campaign.StatusCreated and
// campaign.StatusFailed.
const (
	// StatusExpired: the profile got a URL, but it expired before it was
	// written out. Running the campaign again mints a fresh one.
	StatusExpired = "expired"
	// StatusPending: the profile has no result yet (an interrupted run).
	StatusPending = "pending"
)

// Error types of a row whose URL is left out.
const (
	// ErrExpired: the URL was dead when the row was written.
	ErrExpired = "url_expired"
	// ErrExpiresTooSoon: the URL was alive, but for less than the
	// file's MinValidity.
	ErrExpiresTooSoon = "url_expires_too_soon"
)

// RowStatus is the status a row for r says, written at now: r's own,
// StatusPending for a zero r, or StatusExpired for a URL that expires
// within minValidity of now.
func RowStatus(r campaign.Result, now time.Time, minValidity time.Duration) string {
	switch {
	case r.Status == "":
		return StatusPending
	case r.Status == campaign.StatusCreated && !r.ExpiresAt.After(now.Add(minValidity)):
		return StatusExpired
	}
	return string(r.Status)
}

// Format is an output format.
type Format string

const (
	CSV   Format = "csv"
	JSONL Format = "jsonl"
)

// FormatOf picks the format from a path's extension.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return CSV, nil
	case ".jsonl", ".ndjson":
		return JSONL, nil
	}
	return "", fmt.Errorf("output %q: use a .csv or .jsonl file name", path)
}

var headerName = regexp.MustCompile(`^[a-z0-9_]+$`)

// checkHeader makes sure the passthrough column names are plain
// [a-z0-9_] words, distinct from each other and from Columns, as an import
// expects them.
func checkHeader(passthrough []string) error {
	seen := make(map[string]bool, len(passthrough))
	for i, name := range passthrough {
		switch {
		case !headerName.MatchString(name):
			return fmt.Errorf("column %d %q: a header name must be made of a-z, 0-9 and _", i+1, name)
		case seen[name] || slices.Contains(Columns, name):
			return fmt.Errorf("column %d %q: the header already holds that name", i+1, name)
		}
		seen[name] = true
	}
	return nil
}

// Counts says what a File holds.
type Counts struct {
	Rows, Created, Failed, Expired, Pending int
	// TooSoon counts the Expired rows whose URL was still alive, but for
	// less than MinValidity.
	TooSoon int
	// FirstExpiry is the earliest expires_at of the URLs written.
	FirstExpiry time.Time
}

// File is an output file being written. It is not safe for concurrent use.
type File struct {
	path   string
	format Format
	tmp    *os.File
	claim  *claim // path's lock, shared with Siblings
	done   bool   // committed or aborted
	bw     *bufio.Writer
	cw     *csv.Writer
	header []string
	buf    bytes.Buffer
	enc    *json.Encoder
	counts Counts

	// Now tells the time for the expiry check. Default time.Now.
	Now func() time.Time

	// MinValidity is how long a URL must stay valid after it is written
	// for the row to hand it on; a URL that expires sooner is written as
	// StatusExpired, without the URL. Default 0: only a dead URL is left
	// out.
	MinValidity time.Duration
}

// Create starts writing path with these passthrough columns. It fails at
// once when the directory is not writable, before any work is done, and
// with ErrBusy when another process is writing path: a writer holds
// path's lock (.NAME.lock beside it) until its File is committed or
// aborted. Taking the lock, it removes the temporary files that killed
// writers left (they hold URLs). A path that is a symbolic link is
// written through, to its target.
func Create(path string, passthrough []string) (*File, error) {
	format, err := FormatOf(path)
	if err != nil {
		return nil, err
	}
	if err := checkHeader(passthrough); err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	// A link to an output is written through: the lock, the temporary
	// file and the rename are its target's, as for a run that names the
	// target itself.
	path = followLinks(path)
	c, err := claimOutput(path)
	if err != nil {
		return nil, err
	}
	header := append(append([]string{}, passthrough...), Columns...)
	f, err := newFile(path, format, header, c)
	if err != nil {
		c.release()
		return nil, err
	}
	return f, nil
}

// maxLinks bounds the links followLinks follows, against a loop.
const maxLinks = 8

// followLinks returns what path names once its symbolic links are
// followed, dangling ones too (an output not written yet): path itself
// when it is no link.
func followLinks(path string) string {
	for range maxLinks {
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return path
		}
		target, err := os.Readlink(path)
		if err != nil {
			return path
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	return path
}

// SameOutput reports whether Files created for a and b would write the
// same file: the same path once links are followed.
func SameOutput(a, b string) bool {
	abs := func(p string) string {
		p = followLinks(p)
		if full, err := filepath.Abs(p); err == nil {
			return full
		}
		return filepath.Clean(p)
	}
	return abs(a) == abs(b)
}

// Sibling starts another write of f's output, with f's columns and under
// f's lock, while f stays open: a checkpoint of a run that holds f until
// its end. Its MinValidity and Now are f's.
func (f *File) Sibling() (*File, error) {
	if f.done {
		return nil, fmt.Errorf("output %s: its File is already committed or aborted", f.path)
	}
	f.claim.share()
	s, err := newFile(f.path, f.format, f.header, f.claim)
	if err != nil {
		f.claim.release()
		return nil, err
	}
	s.Now, s.MinValidity = f.Now, f.MinValidity
	return s, nil
}

// newFile starts a temporary file for path under claim c.
func newFile(path string, format Format, header []string, c *claim) (*File, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), tempPattern(path))
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	f := &File{
		path: path, format: format, tmp: tmp, claim: c,
		bw:     bufio.NewWriterSize(tmp, 1<<16),
		header: header,
		Now:    time.Now,
	}
	f.enc = json.NewEncoder(&f.buf)
	f.enc.SetEscapeHTML(false) // keep '&' in URLs readable
	if format == CSV {
		f.cw = csv.NewWriter(f.bw)
		f.cw.UseCRLF = true // RFC 4180 line breaks, inside fields too
		if err := f.cw.Write(f.header); err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			return nil, fmt.Errorf("output %s: %w", path, err)
		}
	}
	return f, nil
}

// Write adds one row: the input's passthrough values, then r. A zero r
// (no result yet) is written as pending.
func (f *File) Write(values []string, r campaign.Result, profileID string) error {
	row := f.row(values, r, profileID)
	f.counts.Rows++
	if f.format == CSV {
		return f.cw.Write(row)
	}
	return f.writeJSON(row)
}

func (f *File) row(values []string, r campaign.Result, profileID string) []string {
	row := make([]string, 0, len(f.header))
	row = append(row, values...)
	for len(row) < len(f.header)-len(Columns) {
		row = append(row, "")
	}

	now := f.Now()
	status, url, expires := RowStatus(r, now, f.MinValidity), r.URL, ""
	errType, errMsg := r.ErrorType, r.ErrorMessage
	switch status {
	case StatusPending:
		f.counts.Pending++
	case StatusExpired:
		url = ""
		at := r.ExpiresAt.UTC().Format(time.RFC3339)
		if r.ExpiresAt.After(now) {
			errType = ErrExpiresTooSoon
			errMsg = fmt.Sprintf("the URL expires at %s, less than %s after this file was written; refresh the campaign to mint a fresh one", at, f.MinValidity)
			f.counts.TooSoon++
		} else {
			errType = ErrExpired
			errMsg = "the URL expired at " + at + "; run the campaign again to mint a fresh one"
		}
		f.counts.Expired++
	case string(campaign.StatusCreated):
		f.counts.Created++
		if f.counts.FirstExpiry.IsZero() || r.ExpiresAt.Before(f.counts.FirstExpiry) {
			f.counts.FirstExpiry = r.ExpiresAt
		}
	default:
		f.counts.Failed++
	}
	if !r.ExpiresAt.IsZero() && url != "" {
		expires = r.ExpiresAt.UTC().Format(time.RFC3339)
	}
	attempts := ""
	if r.Status != "" {
		attempts = strconv.FormatInt(r.Attempts, 10)
	}
	return append(row, profileID, url, expires, status, errType, errMsg, r.RequestID, attempts)
}

func (f *File) writeJSON(row []string) error {
	f.buf.Reset()
	f.buf.WriteByte('{')
	for i, v := range row {
		if i > 0 {
			f.buf.WriteByte(',')
		}
		f.enc.Encode(f.header[i])
		f.buf.Truncate(f.buf.Len() - 1) // Encode ends with a newline
		f.buf.WriteByte(':')
		if f.header[i] == "attempts" && v != "" {
			f.buf.WriteString(v)
			continue
		}
		f.enc.Encode(v)
		f.buf.Truncate(f.buf.Len() - 1)
	}
	f.buf.WriteString("}\n")
	_, err := f.bw.Write(f.buf.Bytes())
	return err
}

// Counts returns what was written so far.
func (f *File) Counts() Counts { return f.counts }

// Commit finishes the file and renames it into place.
func (f *File) Commit() error {
	var err error
	if f.cw != nil {
		f.cw.Flush()
		err = f.cw.Error()
	}
	if err == nil {
		err = f.bw.Flush()
	}
	if err == nil {
		err = f.tmp.Sync()
	}
	if cerr := f.tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.tmp.Name(), f.path)
	}
	if err != nil {
		os.Remove(f.tmp.Name())
	}
	f.finish()
	if err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return nil
}

// Abort drops the file. After Commit it does nothing.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.tmp.Close()
	os.Remove(f.tmp.Name())
	f.finish()
}

// finish lets go of the file's share of its output's lock, once.
func (f *File) finish() {
	if !f.done {
		f.done = true
		f.claim.release()
	}
}

// Path is the file's final name.
func (f *File) Path() string { return f.path }
