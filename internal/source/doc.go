// Package source reads the user profile ids a bulk job works through, one
// record at a time, from CSV files as people export them.
//
// # Input
//
// The input is RFC 4180 CSV in UTF-8: fields may be quoted, quoted fields
// may hold the separator, doubled quotes and line breaks, and lines may end
// in LF or CRLF. A leading UTF-8 byte order mark is dropped. Blank lines
// are skipped, and so are lines of only spaces and tabs, and rows whose
// every field is empty (",,,") whatever their field count; a row of
// separators and spaces (", ,") is not blank, and must match the header's
// field count.
//
// The separator is [CSVConfig.Comma], unless the first line is "sep=X",
// as Excel writes it: then X separates the fields of that file, and the
// line is skipped (but counted). When the header reads as a single cell
// holding semicolons or tabs, the missing id column is reported with what
// to do about the separator.
//
// A file that is not UTF-8 text is refused rather than read into values
// that would reach the API garbled: UTF-16 (with a byte order mark, or a
// NUL beside each ASCII character) before the header is read; a byte that
// is not UTF-8 (Latin-1, Windows-1252) or a NUL byte at the line holding
// it, naming the column. So is a header holding a bare carriage return:
// lines that end in CR alone make the whole file read as one row.
//
// The first row is the header. One of its cells must name the id column
// ([DefaultIDColumn] unless [CSVConfig.IDColumn] says otherwise); the match
// ignores case and surrounding spaces. Every other column passes through
// with its values unchanged: quotes, commas, line breaks and spaces inside
// a value come out as they went in, except that a line break inside a
// quoted value reads as "\n" whether the file has LF or CRLF there (as
// encoding/csv reads it). Only the id cell is trimmed of spaces and tabs.
//
// # Column names
//
// Passthrough columns get names safe to use as output headers: lowercase,
// every run of characters other than a-z and 0-9 turned into one "_",
// leading and trailing "_" dropped, so "First Name" and " first-name "
// both become "first_name". A header cell that leaves nothing becomes
// "column_N", N being its 1-based position. A name that the bulk job's
// own output also uses (user_profile_id, enrollment_url, expires_at,
// status, error_type, error_message, request_id, attempts) is prefixed
// "input_", so a passthrough column "Status" comes out as "input_status".
// Two columns that end up with the same name are an error naming both.
//
// # Errors and line numbers
//
// Lines are counted from 1 at the top of the file, a "sep=" line
// included, and a record is reported at the line it starts on, so the line
// numbers match what an editor shows. A fault in the file's structure (bad
// quoting, a field count that differs from the header's, a record longer
// than [CSVConfig.MaxRecordBytes], text that is not UTF-8 ([ErrNotUTF8]),
// CR line endings ([ErrLineEndings])) is a [*LineError] and ends the read:
// the file needs fixing before any of it is trusted. A UTF-16 file is
// refused with an [ErrNotUTF8] that names no line. An id that is present but
// malformed is not a structural fault; [Screen] reports it, record by
// record, with the reason [uprof.Validate] gives.
//
// # Screening
//
// [Screen] sorts each record into [Valid], [Invalid] or [Repeat] (an id
// seen earlier in the same file), keeping 16 bytes of hash per distinct id
// rather than the ids themselves. [Summary] counts the verdicts and keeps
// the first [MaxProblems] problems for the report.
//
// # SQL queries
//
// [SpoolQuery] runs a query and streams its rows, one at a time, into a
// spool that [OpenSpool] reads back as records, as often as a run needs
// to pass over them. The id column is [QueryConfig.IDColumn] or else the
// first; the others pass through under the names a CSV header would get.
// Values become text (NULL an empty string, times RFC 3339 in UTC); a NULL
// id is kept as [Record.Null] and refused by [Screen] with [ErrNullID]. A
// Spool's Record.Line is the row number, counting from 1, and a fault
// while rows stream is a [*RowError] saying how many were read.
package source
