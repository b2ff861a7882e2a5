// Package sink writes a campaign's results for an email service to import.
//
// A file's extension picks its format: .csv (RFC 4180, UTF-8, no BOM) or
// .jsonl (one JSON object a line). The columns are the input's passthrough
// columns, then Columns. Files are written to a temporary file beside the
// target and renamed into place, so an import never sees half a file, and
// are created mode 0600: they hold bearer URLs.
package sink

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/enrollq/enrollq/internal/campaign"
	"github.com/enrollq/enrollq/internal/source"
)

// Columns are the result columns after the passthrough ones. Row must
// fill them in this order.
var Columns = source.ResultColumns

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

// WriteFile writes results to path atomically, mode 0600.
func WriteFile(path string, passthrough []string, results []campaign.Result) error {
	format, err := FormatOf(path)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}

	bw := bufio.NewWriterSize(tmp, 1<<16)
	switch format {
	case CSV:
		err = writeCSV(bw, passthrough, results)
	case JSONL:
		err = writeJSONL(bw, passthrough, results)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Row returns a result's values in the order of passthrough then Columns.
func Row(passthrough []string, r campaign.Result) []string {
	row := make([]string, 0, len(passthrough)+len(Columns))
	for _, c := range passthrough {
		row = append(row, r.Columns[c])
	}
	expires := ""
	if !r.ExpiresAt.IsZero() {
		expires = r.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return append(row, r.ProfileID, r.URL, expires, string(r.Status),
		r.ErrorType, r.ErrorMessage, r.RequestID, strconv.FormatInt(r.Attempts, 10))
}

func writeCSV(w io.Writer, passthrough []string, results []campaign.Result) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true // RFC 4180 line breaks, inside fields too
	if err := cw.Write(append(append([]string{}, passthrough...), Columns...)); err != nil {
		return err
	}
	for _, r := range results {
		if err := cw.Write(Row(passthrough, r)); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeJSONL(w io.Writer, passthrough []string, results []campaign.Result) error {
	header := append(append([]string{}, passthrough...), Columns...)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep '&' in URLs readable
	for _, r := range results {
		buf.Reset()
		buf.WriteByte('{')
		for i, v := range Row(passthrough, r) {
			if i > 0 {
				buf.WriteByte(',')
			}
			enc.Encode(header[i])
			buf.Truncate(buf.Len() - 1) // Encode ends with a newline
			buf.WriteByte(':')
			if header[i] == "attempts" {
				buf.WriteString(v)
				continue
			}
			enc.Encode(v)
			buf.Truncate(buf.Len() - 1)
		}
		buf.WriteString("}\n")
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}
