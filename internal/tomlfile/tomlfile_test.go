package tomlfile

import (
	"strings"
	"testing"
)

type rule struct {
	Name string `toml:"name"`
	SSID string `toml:"ssid"`
}

type doc struct {
	Rule    []rule `toml:"rule"`
	Default struct {
		Action string `toml:"action"`
	} `toml:"default"`
}

const text = `# policy
[[rule]]
name = "home"
ssid = "HomeNet"   # comment with = sign

[[rule]]
name = "work"
ssid = "Work#1"

[default]
action = "tunnel"
`

func TestLines(t *testing.T) {
	var v doc
	d, err := Decode("p.toml", []byte(text), &v)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n    int
		key  []string
		want int
	}{
		{-1, []string{"default", "action"}, 11},
		{-1, []string{"default"}, 10},
		{0, []string{"rule", "ssid"}, 4},
		{1, []string{"rule", "ssid"}, 8},
		{1, []string{"rule", "name"}, 7},
		{1, []string{"rule", "profile"}, 6}, // missing key: the table's header
		{-1, []string{"nothing"}, 0},
	} {
		if got := d.LineN(tc.n, tc.key...); got != tc.want {
			t.Errorf("LineN(%d, %v) = %d, want %d", tc.n, tc.key, got, tc.want)
		}
	}
	if err := d.ErrorfN(1, []string{"rule", "ssid"}, "bad glob"); err.Error() != "p.toml:8: rule.ssid: bad glob" {
		t.Errorf("ErrorfN = %q", err)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[[rule]]\nname = \"a\"\nsid = \"x\"\n", `p.toml:3: unknown key "rule.sid"`},
		{"[default]\naction = \n", "p.toml:2: "},
		{"\n[default]\naction = 1\n", "p.toml:3: default.action: incompatible types"},
		{"[defualt]\naction = \"x\"\n", `p.toml:1: unknown key "defualt"`},
	} {
		var v doc
		_, err := Decode("p.toml", []byte(tc.text), &v)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Decode(%q) error = %v, want prefix %q", tc.text, err, tc.want)
		}
	}
}

func TestSplitKeyAndComments(t *testing.T) {
	if got := splitKey(`profile."my.home" . mtu`); strings.Join(got, "|") != "profile|my.home|mtu" {
		t.Errorf("splitKey = %q", got)
	}
	if got := stripComment(`ssid = "a#b" # c`); got != `ssid = "a#b" ` {
		t.Errorf("stripComment = %q", got)
	}
}
