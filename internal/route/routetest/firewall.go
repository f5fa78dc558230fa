// Package routetest has a fake of route.Firewall for tests that need no
// root: it keeps the tables it is given and the transcript of what it was
// asked to do, in nft's words.
package routetest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/roamtun/roamtun/internal/route"
)

// Firewall is a route.Firewall in memory. Like the kernel, it refuses
// elements that do not fit their set and fails with ENOENT on deleting
// what is not there. Safe for concurrent use.
type Firewall struct {
	// Fail, if set, is asked before each operation (its first transcript
	// line); an error is returned instead, and nothing changes.
	Fail func(op string) error

	mu     sync.Mutex
	ops    []string
	tables map[string]*route.Table
}

var _ route.Firewall = (*Firewall)(nil)

// Ops is the transcript: one entry per operation that succeeded, its
// commands (as nft would take them) one a line.
func (f *Firewall) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// Tables lists the tables there are now, by name, with the current
// elements of their sets.
func (f *Firewall) Tables() map[string]*route.Table {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]*route.Table{}
	for n, t := range f.tables {
		out[n] = clone(t)
	}
	return out
}

// Elems is the content of a set; nil if there is no such set.
func (f *Firewall) Elems(table, set string) []route.Elem {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, err := f.set(table, set); err == nil {
		return slices.Clone(s.Elems)
	}
	return nil
}

func clone(t *route.Table) *route.Table {
	c := *t
	c.Sets = slices.Clone(t.Sets)
	for i := range c.Sets {
		c.Sets[i].Elems = slices.Clone(c.Sets[i].Elems)
	}
	c.Chains = slices.Clone(t.Chains)
	return &c
}

// do runs an operation: asks Fail, applies change, records op.
func (f *Firewall) do(op string, change func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	first := strings.TrimSuffix(strings.SplitN(op, "\n", 2)[0], " {")
	if f.Fail != nil {
		if err := f.Fail(first); err != nil {
			return err
		}
	}
	if err := change(); err != nil {
		return fmt.Errorf("fake nftables: %s: %w", first, err)
	}
	f.ops = append(f.ops, op)
	return nil
}

// Replace implements route.Firewall.
func (f *Firewall) Replace(t *route.Table) error {
	return f.do("replace "+strings.TrimSuffix(t.String(), "\n"), func() error {
		if err := t.Check(); err != nil {
			return err
		}
		if f.tables == nil {
			f.tables = map[string]*route.Table{}
		}
		f.tables[t.Name] = clone(t)
		return nil
	})
}

// Delete implements route.Firewall.
func (f *Firewall) Delete(table string) error {
	return f.do("delete table inet "+table, func() error {
		if _, ok := f.tables[table]; !ok {
			return syscall.ENOENT
		}
		delete(f.tables, table)
		return nil
	})
}

func (f *Firewall) set(table, set string) (*route.Set, error) {
	t, ok := f.tables[table]
	if !ok {
		return nil, syscall.ENOENT
	}
	for i := range t.Sets {
		if t.Sets[i].Name == set {
			return &t.Sets[i], nil
		}
	}
	return nil, syscall.ENOENT
}

func elemOp(verb, table, set string, elems []route.Elem) string {
	s := make([]string, len(elems))
	for i, e := range elems {
		s[i] = e.String()
	}
	return fmt.Sprintf("%s element inet %s %s { %s }", verb, table, set, strings.Join(s, ", "))
}

// AddElements implements route.Firewall.
func (f *Firewall) AddElements(table, set string, elems ...route.Elem) error {
	return f.do(elemOp("add", table, set, elems), func() error { return f.add(table, set, elems) })
}

func (f *Firewall) add(table, set string, elems []route.Elem) error {
	s, err := f.set(table, set)
	if err != nil {
		return err
	}
	for _, e := range elems {
		if e.Type() != s.Type {
			return fmt.Errorf("element %s is not of type %s: %w", e, s.Type, syscall.EINVAL)
		}
	}
	for _, e := range elems {
		if !slices.Contains(s.Elems, e) {
			s.Elems = append(s.Elems, e)
		}
	}
	return nil
}

// DeleteElements implements route.Firewall. Like the kernel's, it deletes
// all or (ENOENT) none.
func (f *Firewall) DeleteElements(table, set string, elems ...route.Elem) error {
	return f.do(elemOp("delete", table, set, elems), func() error {
		s, err := f.set(table, set)
		if err != nil {
			return err
		}
		for _, e := range elems {
			if !slices.Contains(s.Elems, e) {
				return syscall.ENOENT
			}
		}
		s.Elems = slices.DeleteFunc(s.Elems, func(e route.Elem) bool { return slices.Contains(elems, e) })
		return nil
	})
}

// ResetSets implements route.Firewall: all sets or none.
func (f *Firewall) ResetSets(table string, sets ...route.SetElems) error {
	var lines []string
	for _, se := range sets {
		lines = append(lines, fmt.Sprintf("flush set inet %s %s", table, se.Set))
	}
	for _, se := range sets {
		if len(se.Elems) > 0 {
			lines = append(lines, elemOp("add", table, se.Set, se.Elems))
		}
	}
	return f.do(strings.Join(lines, "\n"), func() error {
		t, ok := f.tables[table]
		if !ok {
			return syscall.ENOENT
		}
		saved := clone(t)
		for _, se := range sets {
			s, err := f.set(table, se.Set)
			if err == nil {
				s.Elems = nil
				err = f.add(table, se.Set, se.Elems)
			}
			if err != nil {
				f.tables[table] = saved
				return err
			}
		}
		return nil
	})
}
