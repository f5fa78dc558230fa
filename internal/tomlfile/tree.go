package tomlfile

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// kind is the TOML type of a node.
type kind int

const (
	kTable kind = iota
	kArray
	kString
	kInteger
	kFloat
	kBool
	kDateTime
	kBad // a value that could not be read (e.g. an integer out of range): already reported
)

// kindName is a node kind in words, for type errors.
var kindName = map[kind]string{
	kTable: "a table", kArray: "an array", kString: "a string", kInteger: "an integer",
	kFloat: "a float", kBool: "a boolean", kDateTime: "a date-time", kBad: "a bad value",
}

// node is one value of the document with the line it was written on.
type node struct {
	kind kind
	line int // the line of its key (values), header ([table]) or element

	// tables
	keys     []string // in the order written
	children map[string]*node
	explicit bool // defined by a [header]
	dotted   bool // created by a dotted key (a.b = 1)
	inline   bool // an inline table {…}: closed once written
	// arrays
	elems   []*node
	aot     bool // an array of tables ([[header]])
	closed  bool // a static array (values in [ … ]): cannot be extended by [[header]]
	scalarS string
	scalarI int64
	scalarB bool
}

func newTable(line int) *node { return &node{kind: kTable, line: line, children: map[string]*node{}} }

func (n *node) set(k string, c *node) {
	n.keys = append(n.keys, k)
	n.children[k] = c
}

// builder turns the parser's expressions into a tree, applying TOML's rules
// on tables and keys (a key defined twice, a table defined twice, an inline
// table extended…). A broken rule is reported and the offending expression is
// skipped, so every such problem in a file is found in one pass.
type builder struct {
	p        *unstable.Parser
	lines    []int // offsets of line starts
	root     *node
	cur      *node
	problems []semErr
	tooDeep  bool // the value being read nests past maxDepth
}

type semErr struct {
	line int
	msg  string
}

// build parses data. It returns the tree as far as it could be read, the
// semantic problems, and the syntax error (which ends the parse) if any.
func build(data []byte) (root *node, sem []semErr, syntax *semErr) {
	data = data[:len(data):len(data)]
	b := &builder{p: &unstable.Parser{}, root: newTable(1)}
	b.lines = lineStarts(data)
	b.cur = b.root
	b.p.Reset(data)
	for b.p.NextExpression() {
		b.expr(b.p.Expression())
	}
	if err := b.p.Error(); err != nil {
		syntax = &semErr{line: 1, msg: "syntax error: " + err.Error()}
		var pe *unstable.ParserError
		if errors.As(err, &pe) {
			syntax.line = b.lineAtOffset(cap(data) - cap(pe.Highlight))
			if len(pe.Key) > 0 {
				syntax.msg = strings.Join(pe.Key, ".") + ": " + syntax.msg
			}
		}
	}
	return b.root, b.problems, syntax
}

func lineStarts(data []byte) []int {
	out := []int{0}
	for i, c := range data {
		if c == '\n' {
			out = append(out, i+1)
		}
	}
	return out
}

// lineAtOffset is the 1-based line holding byte offset off.
func (b *builder) lineAtOffset(off int) int {
	return sort.SearchInts(b.lines, off+1)
}

// lineOf is the line where n (a key or scalar, which carry their bytes) starts.
func (b *builder) lineOf(n *unstable.Node) int {
	if n == nil || n.Raw.Length == 0 && n.Raw.Offset == 0 {
		return 0
	}
	return b.lineAtOffset(int(n.Raw.Offset))
}

func (b *builder) errorf(line int, format string, args ...any) {
	b.problems = append(b.problems, semErr{line, fmt.Sprintf(format, args...)})
}

// keyParts returns the parts of a (dotted) key and the line of its first part.
func (b *builder) keyParts(e *unstable.Node) ([]string, int) {
	var parts []string
	line := 0
	it := e.Key()
	for it.Next() {
		k := it.Node()
		if line == 0 {
			line = b.lineOf(k)
		}
		parts = append(parts, string(k.Data))
	}
	return parts, line
}

func (b *builder) expr(e *unstable.Node) {
	switch e.Kind {
	case unstable.Table, unstable.ArrayTable:
		parts, line := b.keyParts(e)
		b.cur = b.header(parts, line, e.Kind == unstable.ArrayTable)
	case unstable.KeyValue:
		b.keyValue(b.cur, e, 0)
	}
}

// orphan is where the keys of a rejected [header] go: they are parsed, but
// belong to no table of the document.
func orphan(line int) *node { return newTable(line) }

// header handles [a.b.c] (aot false) and [[a.b.c]] (aot true) and returns
// the table that the following key/value pairs go into.
func (b *builder) header(parts []string, line int, aot bool) *node {
	t := b.root
	for i, k := range parts[:len(parts)-1] {
		c, ok := t.children[k]
		switch {
		case !ok:
			c = newTable(line)
			t.set(k, c)
		case c.kind == kArray && c.aot && len(c.elems) > 0:
			c = c.elems[len(c.elems)-1]
		case c.kind != kTable || c.inline:
			b.errorf(line, "%s is already defined as %s on line %d", dotted(parts[:i+1]), what(c), c.line)
			return orphan(line)
		}
		t = c
	}
	k := parts[len(parts)-1]
	name := dotted(parts)
	c, ok := t.children[k]
	if aot {
		switch {
		case !ok:
			c = &node{kind: kArray, line: line, aot: true}
			t.set(k, c)
		case c.kind != kArray || !c.aot:
			b.errorf(line, "[[%s]]: %s is already defined as %s on line %d", name, name, what(c), c.line)
			return orphan(line)
		}
		e := newTable(line)
		e.explicit = true
		c.elems = append(c.elems, e)
		return e
	}
	switch {
	case !ok:
		c = newTable(line)
		c.explicit = true
		t.set(k, c)
		return c
	case c.kind != kTable || c.inline:
		b.errorf(line, "[%s]: %s is already defined as %s on line %d", name, name, what(c), c.line)
	case c.explicit:
		b.errorf(line, "[%s] is defined twice: first on line %d", name, c.line)
	case c.dotted:
		b.errorf(line, "[%s]: the table was already defined with dotted keys on line %d", name, c.line)
	default: // created implicitly by an earlier [a.b.c] header: now defined
		c.explicit, c.line = true, line
		return c
	}
	return orphan(line)
}

func what(n *node) string {
	switch {
	case n.kind == kTable && n.inline:
		return "an inline table"
	case n.kind == kArray && n.aot:
		return "an array of tables"
	}
	return kindName[n.kind]
}

// keyValue sets a.b.c = v in t. depth counts nested arrays and inline tables.
func (b *builder) keyValue(t *node, e *unstable.Node, depth int) {
	parts, line := b.keyParts(e)
	for i, k := range parts[:len(parts)-1] {
		c, ok := t.children[k]
		switch {
		case !ok:
			c = newTable(line)
			c.dotted = true
			t.set(k, c)
		case c.kind != kTable || !c.dotted || c.inline:
			b.errorf(line, "%s is already defined as %s on line %d", dotted(parts[:i+1]), what(c), c.line)
			return
		}
		t = c
	}
	k := parts[len(parts)-1]
	if c, ok := t.children[k]; ok {
		b.errorf(line, "%s is defined twice: first on line %d", dotted(parts), c.line)
		return
	}
	if depth == 0 {
		b.tooDeep = false
	}
	v := b.value(e.Value(), line, depth)
	if depth == 0 && b.tooDeep {
		v = &node{kind: kBad, line: line} // reported once, not also as a type error
	}
	t.set(k, v)
}

// maxDepth bounds nested arrays and inline tables; the parser has its own,
// larger bound, this one keeps the decoder's recursion short.
const maxDepth = 64

// value converts a value node; line is that of its key, used for nodes
// that do not carry their own bytes (arrays).
func (b *builder) value(v *unstable.Node, line int, depth int) *node {
	if l := b.lineOf(v); l > 0 && v.Kind != unstable.Array {
		line = l
	}
	if depth > maxDepth {
		b.tooDeep = true
		b.errorf(line, "arrays and inline tables nested more than %d deep", maxDepth)
		return &node{kind: kBad, line: line}
	}
	switch v.Kind {
	case unstable.String:
		return &node{kind: kString, line: line, scalarS: string(v.Data)}
	case unstable.Bool:
		return &node{kind: kBool, line: line, scalarB: string(v.Data) == "true"}
	case unstable.Integer:
		i, err := parseInt(string(v.Data))
		if err != nil {
			b.errorf(line, "integer %s: %v", v.Data, err)
			return &node{kind: kBad, line: line}
		}
		return &node{kind: kInteger, line: line, scalarI: i}
	case unstable.Float:
		return &node{kind: kFloat, line: line}
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return &node{kind: kDateTime, line: line}
	case unstable.Array:
		a := &node{kind: kArray, line: line, closed: true}
		it := v.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			a.elems = append(a.elems, b.value(c, line, depth+1))
		}
		return a
	case unstable.InlineTable:
		t := newTable(line)
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				b.keyValue(t, c, depth+1)
			}
		}
		closeInline(t)
		return t
	}
	return &node{kind: kBad, line: line}
}

// closeInline marks an inline table and the tables its dotted keys made as
// closed to later additions.
func closeInline(t *node) {
	t.inline = true
	for _, c := range t.children {
		if c.kind == kTable && !c.inline {
			closeInline(c)
		}
	}
}

func parseInt(s string) (int64, error) {
	s = strings.ReplaceAll(s, "_", "")
	base := 10
	switch {
	case strings.HasPrefix(s, "0x"):
		base, s = 16, s[2:]
	case strings.HasPrefix(s, "0o"):
		base, s = 8, s[2:]
	case strings.HasPrefix(s, "0b"):
		base, s = 2, s[2:]
	}
	i, err := strconv.ParseInt(s, base, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, errors.New("out of range")
	}
	return i, err
}

// dotted writes a key path as TOML would, quoting parts that need it.
func dotted(parts []string) string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = quoteKey(p)
	}
	return strings.Join(out, ".")
}

func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for _, c := range k {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return strconv.Quote(k)
		}
	}
	return k
}
