package tomlfile

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// decoder fills a Go value from a tree, reporting every key the value has no
// field for and every value of the wrong type; it carries on after each, so
// that one run finds them all. A field whose value is wrong is left as it was
// (nil for a pointer), and its key is marked bad so that validation does not
// report it a second time.
type decoder struct {
	d *Doc
}

// decode stores n in v; path is n's place in the document (array elements as
// their index in decimal).
func (dc *decoder) decode(n *node, v reflect.Value, path []string) bool {
	if n.kind == kBad {
		dc.d.markBad(path)
		return false
	}
	switch v.Kind() {
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		if !dc.decode(n, e.Elem(), path) {
			return false
		}
		v.Set(e)
		return true
	case reflect.Struct:
		if !dc.wantTable(n, path, "") {
			return false
		}
		dc.decodeStruct(n, v, path)
		return true
	case reflect.Map:
		if !dc.wantTable(n, path, ".NAME") {
			return false
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for _, k := range n.keys {
			e := reflect.New(v.Type().Elem()).Elem()
			if dc.decode(n.children[k], e, append(path, k)) {
				v.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), e)
			}
		}
		return true
	case reflect.Slice:
		if !dc.want(n, kArray, path) {
			return false
		}
		s := reflect.MakeSlice(v.Type(), 0, len(n.elems))
		for i, c := range n.elems {
			e := reflect.New(v.Type().Elem()).Elem()
			if dc.decode(c, e, append(path, strconv.Itoa(i))) {
				s = reflect.Append(s, e)
			}
		}
		v.Set(s)
		return true
	case reflect.String:
		if !dc.want(n, kString, path) {
			return false
		}
		v.SetString(n.scalarS)
		return true
	case reflect.Bool:
		if !dc.want(n, kBool, path) {
			return false
		}
		v.SetBool(n.scalarB)
		return true
	case reflect.Int, reflect.Int64, reflect.Int32:
		if !dc.want(n, kInteger, path) {
			return false
		}
		if v.OverflowInt(n.scalarI) || v.Kind() == reflect.Int && (n.scalarI > math.MaxInt32 || n.scalarI < math.MinInt32) {
			dc.d.errorAt(n.line, path, fmt.Sprintf("%s: %d is out of range", dc.d.Name(path), n.scalarI))
			return false
		}
		v.SetInt(n.scalarI)
		return true
	case reflect.Interface:
		return true // accepted as is, not stored
	}
	panic(fmt.Sprintf("tomlfile: cannot decode into %s", v.Type()))
}

// want reports whether n is of kind k, and reports a type error if not.
func (dc *decoder) want(n *node, k kind, path []string) bool {
	if n.kind == k {
		return true
	}
	dc.d.errorAt(n.line, path, fmt.Sprintf("%s: must be %s, not %s", dc.d.Name(path), kindName[k], what(n)))
	return false
}

// wantTable is want for a table, with a hint on how to write one; suffix
// is ".NAME" for a map (one table per name).
func (dc *decoder) wantTable(n *node, path []string, suffix string) bool {
	if n.kind == kTable {
		return true
	}
	msg := fmt.Sprintf("%s: must be a table, not %s", dc.d.Name(path), what(n))
	if len(path) > 0 {
		msg += " (write it as [" + dotted(withoutIndexes(path)) + suffix + "] or a {…} inline table)"
	}
	dc.d.errorAt(n.line, path, msg)
	return false
}

// field is one struct field with its TOML key.
type field struct {
	key   string
	index int
}

func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if !f.IsExported() || tag == "-" {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		out = append(out, field{tag, i})
	}
	return out
}

func (dc *decoder) decodeStruct(n *node, v reflect.Value, path []string) {
	fields := fieldsOf(v.Type())
	for _, k := range n.keys {
		c := n.children[k]
		i := slicesIndex(fields, k)
		if i < 0 && c.kind == kBad {
			continue // already reported
		}
		if i < 0 {
			p := append(path, k)
			msg := fmt.Sprintf("unknown key %q", dc.d.Name(p))
			if s := suggest(k, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			dc.d.errorAt(c.line, p, msg)
			continue
		}
		dc.decode(c, v.Field(fields[i].index), append(path, k))
	}
}

func slicesIndex(fields []field, k string) int {
	for i, f := range fields {
		if f.key == k {
			return i
		}
	}
	return -1
}

// suggest returns the known key closest to an unknown one, if it is close
// enough to be a typo.
func suggest(k string, fields []field) string {
	best, bestD := "", 3
	if len(k) <= 3 {
		bestD = 2
	}
	cands := make([]string, 0, len(fields))
	for _, f := range fields {
		cands = append(cands, f.key)
	}
	sort.Strings(cands)
	for _, c := range cands {
		if d := editDistance(strings.ToLower(k), c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein (optimal string alignment)
// distance of two short strings.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func withoutIndexes(path []string) []string {
	out := make([]string, 0, len(path))
	for _, p := range path {
		if !isIndex(p) {
			out = append(out, p)
		}
	}
	return out
}

func isIndex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
