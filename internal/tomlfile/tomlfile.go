// Package tomlfile decodes TOML files strictly: syntax errors, type errors,
// unknown keys and validation errors all come back as "FILE:LINE: message",
// the form editors and people can jump to.
package tomlfile

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

var typeErrRE = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

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

// Doc is a decoded file: it keeps the text so that later validation can name
// the line a key was written on.
type Doc struct {
	Path  string
	lines []string
	md    toml.MetaData
}

// ReadFile reads and strictly decodes path into v. See Decode.
func ReadFile(path string, v any) (*Doc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return Decode(path, data, v)
}

// Decode strictly decodes data (read from path) into v. Every unknown key is
// reported with its line; the returned error is an Errors list.
func Decode(path string, data []byte, v any) (*Doc, error) {
	d := &Doc{Path: path, lines: strings.Split(string(data), "\n")}
	md, err := toml.NewDecoder(strings.NewReader(string(data))).Decode(v)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line := pe.Position.Line
			if line == 0 {
				line = pe.Line
			}
			msg := pe.Message
			if pe.LastKey != "" && !strings.Contains(msg, pe.LastKey) {
				msg = pe.LastKey + ": " + msg
			}
			return nil, Errors{fmt.Errorf("%s:%d: %s", path, line, msg)}
		}
		// Type errors come as "toml: line N (last key "k"): message".
		if m := typeErrRE.FindStringSubmatch(err.Error()); m != nil {
			return nil, Errors{fmt.Errorf("%s:%s: %s: %s", path, m[1], m[2], m[3])}
		}
		return nil, Errors{fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "toml: "))}
	}
	d.md = md
	var errs Errors
	for _, k := range md.Undecoded() {
		// A table whose keys are all undecoded is reported once, as itself.
		if parentUndecoded(md, k) {
			continue
		}
		errs = append(errs, d.Errorf(k, "unknown key %q", k.String()))
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return d, errs.Err()
}

func parentUndecoded(md toml.MetaData, k toml.Key) bool {
	for _, u := range md.Undecoded() {
		if len(u) < len(k) && strings.HasPrefix(k.String()+".", u.String()+".") {
			return true
		}
	}
	return false
}

// IsDefined reports whether the key was written in the file.
func (d *Doc) IsDefined(key ...string) bool { return d.md.IsDefined(key...) }

// Errorf returns "FILE:LINE: key: message" for a key path such as
// ["profile", "home", "mtu"]; the line is that of the key's first definition
// (0 and no line when it cannot be found, e.g. for a default value).
func (d *Doc) Errorf(key []string, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	name := strings.Join(key, ".")
	if name != "" && !strings.Contains(msg, name) {
		msg = name + ": " + msg
	}
	if line := d.Line(key...); line > 0 {
		return fmt.Errorf("%s:%d: %s", d.Path, line, msg)
	}
	return fmt.Errorf("%s: %s", d.Path, msg)
}

// ErrorfN is Errorf for the n-th (0-based) element of an array of tables,
// e.g. ErrorfN(3, []string{"rule","ssid"}, ...) for the ssid of the fourth [[rule]].
func (d *Doc) ErrorfN(n int, key []string, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	name := strings.Join(key, ".")
	if !strings.Contains(msg, name) {
		msg = name + ": " + msg
	}
	if line := d.LineN(n, key...); line > 0 {
		return fmt.Errorf("%s:%d: %s", d.Path, line, msg)
	}
	return fmt.Errorf("%s: %s", d.Path, msg)
}

// Line returns the 1-based line on which key was first defined, or 0.
func (d *Doc) Line(key ...string) int { return d.LineN(-1, key...) }

// LineN is Line inside the n-th [[table]] of an array of tables (n < 0: any).
// For a key that names a table, the line of its header is returned; for a key
// missing from an existing table, the table's header.
func (d *Doc) LineN(n int, key ...string) int {
	if len(key) == 0 {
		return 0
	}
	var (
		table      []string
		headerLine int
		seen       = map[string]int{} // array-of-tables header → count so far
		best       int
		tableLine  int
	)
	want := strings.Join(key, ".")
	for i, raw := range d.lines {
		line := strings.TrimSpace(stripComment(raw))
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			array := strings.HasPrefix(line, "[[")
			name := strings.Trim(line, "[] \t")
			table = splitKey(name)
			headerLine = i + 1
			idx := -1
			if array {
				idx = seen[name]
				seen[name]++
			}
			match := n < 0 || idx == n || !array
			if match && strings.Join(table, ".") == want {
				return headerLine
			}
			if match && isPrefix(table, key) && tableLine == 0 && (n < 0 || idx == n) {
				tableLine = headerLine
			}
			continue
		}
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			continue
		}
		k := append(append([]string{}, table...), splitKey(strings.TrimSpace(line[:eq]))...)
		if n >= 0 && len(table) > 0 && seen[strings.Join(table, ".")] != n+1 {
			continue
		}
		if strings.Join(k, ".") == want || isPrefix(k, key) && best == 0 {
			if strings.Join(k, ".") == want {
				return i + 1
			}
			best = i + 1
		}
	}
	if best > 0 {
		return best
	}
	return tableLine
}

func isPrefix(p, full []string) bool {
	if len(p) > len(full) {
		return false
	}
	for i := range p {
		if p[i] != full[i] {
			return false
		}
	}
	return true
}

// splitKey splits a dotted TOML key, honouring quoted parts.
func splitKey(s string) []string {
	var (
		out []string
		cur strings.Builder
		q   byte
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0 && c == q:
			q = 0
		case q != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			q = c
		case c == '.':
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, strings.TrimSpace(cur.String()))
}

// stripComment removes a trailing # comment that is not inside a string.
func stripComment(s string) string {
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q == '"' && c == '\\':
			i++
		case q != 0 && c == q:
			q = 0
		case q == 0 && (c == '"' || c == '\''):
			q = c
		case q == 0 && c == '#':
			return s[:i]
		}
	}
	return s
}
