// Package tomlfile decodes TOML files strictly and reports every problem in
// a file at once: syntax, TOML's own rules (a key or table defined twice),
// unknown keys, values of the wrong type, and whatever the caller's
// validation adds, each as "FILE:LINE: message", the form editors and people
// can jump to.
//
// Lines come from the parser's own positions (go-toml/v2's unstable parser,
// which gives every key and value its byte range), not from re-scanning the
// text, so they are right around multi-line strings, arrays and inline tables.
// BurntSushi/toml, used before, keeps key positions only in unexported fields
// (and one per key path, so the n-th [[rule]] could not be told apart), and
// stops at the first type error.
package tomlfile

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Severity says whether a problem makes the file unusable.
type Severity string

// Severities.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Problem is one finding in one file. Line is 0 when the problem concerns the
// file as a whole (it cannot be read, say).
type Problem struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
}

// Error returns "FILE:LINE: message", or "FILE:LINE: warning: message".
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
	}
	if p.File != "" || p.Line > 0 {
		b.WriteString(": ")
	}
	if p.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// AsProblem returns err as a Problem: itself if it is one, else an error
// that names no file or line.
func AsProblem(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	return &Problem{Severity: SeverityError, Message: err.Error()}
}

// Errors is a list of problems found in one or more files. Its Error method
// prints one problem per line.
type Errors []error

func (e Errors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.Is/As look at each problem.
func (e Errors) Unwrap() []error { return e }

// Err returns nil for an empty list, else the list itself.
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

// Sort orders problems by file (in the order given by files, others after)
// and line; problems on one line keep their order.
func Sort(list []*Problem, files []string) {
	rank := func(f string) int {
		for i, x := range files {
			if x == f {
				return i
			}
		}
		return len(files)
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if ra, rb := rank(a.File), rank(b.File); ra != rb {
			return ra < rb
		}
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
}

// Doc is a decoded file: its tree keeps the line of every key, so that
// validation can name the line a value was written on, and it collects the
// file's problems.
type Doc struct {
	Path     string
	root     *node
	complete bool
	problems []*Problem
	bad      map[string]bool // key paths already reported
}

// ReadFile reads and decodes path into v. See Decode.
func ReadFile(path string, v any) (*Doc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return Decode(path, data, v)
}

// Decode decodes data (read from path) into v, a pointer to a struct whose
// fields have `toml:"key"` tags (strings, bools, ints, pointers to them,
// slices, maps of string to such, nested structs). It never panics on any
// input, and it never stops early: a syntax error ends the parse, but what
// came before it is still decoded and checked.
//
// The Doc is always returned, with the problems found so far (Problems);
// the error is the same list, or nil when there is none. Fields whose value
// was wrong are left unset.
func Decode(path string, data []byte, v any) (*Doc, error) {
	d := &Doc{Path: path, bad: map[string]bool{}}
	root, sem, syntax := build(data)
	d.root, d.complete = root, syntax == nil
	for _, s := range sem {
		d.add(s.line, SeverityError, s.msg)
	}
	if syntax != nil {
		d.add(syntax.line, SeverityError, syntax.msg)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		panic("tomlfile: Decode needs a pointer to a struct")
	}
	(&decoder{d}).decodeStruct(root, rv.Elem(), nil)
	return d, d.Err()
}

// Complete reports whether the whole file was parsed. After a syntax error
// it is false: keys written after the error are not in the Doc, so a
// validator should not report them missing.
func (d *Doc) Complete() bool { return d.complete }

func (d *Doc) add(line int, sev Severity, msg string) {
	d.problems = append(d.problems, &Problem{File: d.Path, Line: max(line, 1), Severity: sev, Message: msg})
}

func (d *Doc) markBad(path []string) { d.bad[strings.Join(path, "\x00")] = true }

// isBad reports whether path, or a key above it, was already reported.
func (d *Doc) isBad(path []string) bool {
	for i := len(path); i > 0; i-- {
		if d.bad[strings.Join(path[:i], "\x00")] {
			return true
		}
	}
	return false
}

// Reported reports whether a problem was reported about the value at path
// or anything in it (a key of the wrong type, an unknown key, a bad value).
func (d *Doc) Reported(path ...string) bool {
	if d.isBad(path) {
		return true
	}
	prefix := strings.Join(path, "\x00") + "\x00"
	for k := range d.bad {
		if strings.HasPrefix(k, prefix) || len(path) == 0 {
			return true
		}
	}
	return false
}

// errorAt reports a decode problem for path on line and marks path bad.
func (d *Doc) errorAt(line int, path []string, msg string) {
	d.markBad(path)
	d.add(line, SeverityError, msg)
}

// Errorf reports a problem with the value at path (array elements by their
// index: "rule", "3", "ssid"), on the line it was written on, or the nearest
// enclosing table's line when it is missing. A key whose value was already
// reported (say, a type error) is not reported again.
func (d *Doc) Errorf(path []string, format string, args ...any) {
	if d.isBad(path) {
		return
	}
	d.markBad(path)
	d.add(d.Line(path...), SeverityError, fmt.Sprintf(format, args...))
}

// Warnf is Errorf for a warning: something legal that is very likely not
// what was meant.
func (d *Doc) Warnf(path []string, format string, args ...any) {
	if d.isBad(path) {
		return
	}
	d.add(d.Line(path...), SeverityWarning, fmt.Sprintf(format, args...))
}

// Problems returns the problems found so far, in line order.
func (d *Doc) Problems() []*Problem {
	out := append([]*Problem(nil), d.problems...)
	Sort(out, nil)
	return out
}

// HasErrors reports whether any problem is an error.
func (d *Doc) HasErrors() bool {
	for _, p := range d.problems {
		if p.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Err returns the errors (not the warnings) as an Errors list, or nil.
func (d *Doc) Err() error {
	var out Errors
	for _, p := range d.Problems() {
		if p.Severity == SeverityError {
			out = append(out, p)
		}
	}
	return out.Err()
}

// Name is path as a dotted key for messages, without array indexes.
func (d *Doc) Name(path []string) string { return dotted(withoutIndexes(path)) }

// Has reports whether the value at path was written in the file.
func (d *Doc) Has(path ...string) bool {
	n, found := d.lookup(path)
	return n != nil && found
}

// Line returns the line on which the value at path was written: a key's
// line, an array element's own line, a table's [header]; for a path that is
// not in the file, the line of the nearest enclosing table (1 at worst).
func (d *Doc) Line(path ...string) int {
	n, _ := d.lookup(path)
	if n == nil || n.line < 1 {
		return 1
	}
	return n.line
}

// lookup walks path as far as it goes; found says whether all of it did.
func (d *Doc) lookup(path []string) (n *node, found bool) {
	n = d.root
	if n == nil {
		return nil, false
	}
	for _, p := range path {
		var next *node
		switch n.kind {
		case kTable:
			next = n.children[p]
		case kArray:
			if i, err := strconv.Atoi(p); err == nil && i >= 0 && i < len(n.elems) {
				next = n.elems[i]
			}
		}
		if next == nil {
			return n, false
		}
		n = next
	}
	return n, true
}
