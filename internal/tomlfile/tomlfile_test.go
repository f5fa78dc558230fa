package tomlfile

import (
	"strings"
	"testing"
)

type rule struct {
	Name  *string  `toml:"name"`
	SSID  string   `toml:"ssid"`
	BSSID []string `toml:"bssid"`
	Port  *int     `toml:"port"`
	On    bool     `toml:"on"`
}

type doc struct {
	Rule    []rule `toml:"rule"`
	Default struct {
		Action string `toml:"action"`
	} `toml:"default"`
	Profile map[string]*rule `toml:"profile"`
}

const text = `# policy
[[rule]]
name = "home"
ssid = """
Home
Net"""   # a multi-line string: the next key is on line 7

bssid = [
  "aa",
  'bb',
]

[[rule]]
name = "work"
ssid = "Work#1"

[default]
action = "tunnel"

[profile.a]
port = 0x16
[profile."b.c"]
ssid = 'x'
`

func TestLines(t *testing.T) {
	var v doc
	d, err := Decode("p.toml", []byte(text), &v)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Rule) != 2 || v.Rule[0].SSID != "Home\nNet" || *v.Rule[1].Name != "work" || v.Default.Action != "tunnel" ||
		*v.Profile["a"].Port != 22 || v.Profile["b.c"].SSID != "x" || strings.Join(v.Rule[0].BSSID, ",") != "aa,bb" {
		t.Fatalf("decoded %+v", v)
	}
	for _, tc := range []struct {
		path []string
		want int
	}{
		{[]string{"rule", "0"}, 2},
		{[]string{"rule", "0", "ssid"}, 4},
		{[]string{"rule", "0", "bssid"}, 8},
		{[]string{"rule", "0", "bssid", "1"}, 10},
		{[]string{"rule", "1", "ssid"}, 15},
		{[]string{"rule", "1", "name"}, 14},
		{[]string{"rule", "1", "profile"}, 13}, // missing key: the table's header
		{[]string{"default", "action"}, 18},
		{[]string{"default"}, 17},
		{[]string{"profile", "b.c", "ssid"}, 23},
		{[]string{"nothing"}, 1},
	} {
		if got := d.Line(tc.path...); got != tc.want {
			t.Errorf("Line(%q) = %d, want %d", tc.path, got, tc.want)
		}
	}
	d.Errorf([]string{"rule", "1", "ssid"}, "rule.ssid: bad glob")
	if err := d.Err(); err == nil || err.Error() != "p.toml:15: rule.ssid: bad glob" {
		t.Errorf("Errorf = %v", err)
	}
}

// TestAllAtOnce: every kind of problem in a file comes back from one Decode.
func TestAllAtOnce(t *testing.T) {
	src := `[[rule]]
name = 5
sid = "x"
bssid = ["aa", 7]
port = 99999999999
[default]
action = "a"
action = "b"
[[default]]
[profile.x]
on = "yes"
[profile.x]
`
	var v doc
	_, err := Decode("p.toml", []byte(src), &v)
	want := []string{
		`p.toml:2: rule.name: must be a string, not an integer`,
		`p.toml:3: unknown key "rule.sid" (did you mean "ssid"?)`,
		`p.toml:4: rule.bssid: must be a string, not an integer`,
		`p.toml:5: rule.port: 99999999999 is out of range`,
		`p.toml:8: action is defined twice: first on line 7`,
		`p.toml:9: [[default]]: default is already defined as a table on line 6`,
		`p.toml:11: profile.x.on: must be a boolean, not a string`,
		`p.toml:12: [profile.x] is defined twice: first on line 10`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	got := strings.Split(err.Error(), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(v.Rule) != 1 || v.Rule[0].Name != nil || strings.Join(v.Rule[0].BSSID, ",") != "aa" {
		t.Errorf("good parts not decoded: %+v", v.Rule)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[default]\naction = \n", "p.toml:2: "},
		{"\n[default]\naction = 1\n", "p.toml:3: default.action: must be a string, not an integer"},
		{"[defualt]\naction = \"x\"\n", `p.toml:1: unknown key "defualt" (did you mean "default"?)`},
		{"rule = 5\n", `p.toml:1: rule: must be an array, not an integer`},
		{"default = 5\n", `p.toml:1: default: must be a table, not an integer (write it as [default]`},
		{"a = \"\"\"\nx\n\"\"\"\n[[rule]\n", "p.toml:4: "},
		{"x = '''\n\n\n", "p.toml:"},
		{"[a]\nb.c = 1\n[a.b]\n", "p.toml:3: [a.b]: the table was already defined with dotted keys on line 2"},
		{"[a.b]\n[a]\nb.c = 1\n", "p.toml:3: b is already defined as a table on line 1"},
		{"a = {b = 1}\n[a.c]\n", "p.toml:2: a is already defined as an inline table on line 1"},
		{"a = [1]\n[[a]]\n", "p.toml:2: [[a]]: a is already defined as an array on line 1"},
		{"a = {b.c = 1, b.d = 2}\n", `p.toml:1: unknown key "a"`},
		{"a = 1979-05-27\n", `p.toml:1: unknown key "a"`},
		{"[profile.x]\nport = 1.5\n", `p.toml:2: profile.x.port: must be an integer, not a float`},
	} {
		var v doc
		_, err := Decode("p.toml", []byte(tc.text), &v)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%q) error = %v, want %q", tc.text, err, tc.want)
		}
	}
}

func TestDeepNesting(t *testing.T) {
	for _, src := range []string{
		"a = " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\n",
		"a = " + strings.Repeat("{b=", 10000) + "1" + strings.Repeat("}", 10000) + "\n",
		"a = " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "\n",
		"a = " + strings.Repeat("[", 100000) + "\n",
	} {
		var v doc
		_, err := Decode("p.toml", []byte(src), &v)
		if err == nil || !strings.HasPrefix(err.Error(), "p.toml:1: ") {
			t.Errorf("nesting: error %.200v", err)
		}
	}
}

func TestSuggest(t *testing.T) {
	fields := fieldsOf(typeOf[rule]())
	for k, want := range map[string]string{"ssdi": "ssid", "nmae": "name", "bssids": "bssid", "colour": "", "SSID": "ssid"} {
		if got := suggest(k, fields); got != want {
			t.Errorf("suggest(%q) = %q, want %q", k, got, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(text))
	f.Add([]byte("[[rule]]\nname = 5\n[a]\nb.c=1\n[a.b]\n"))
	f.Add([]byte("a = {b = [1, {c = 2}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var v doc
		d, err := Decode("f.toml", data, &v)
		if d == nil {
			t.Fatal("nil Doc")
		}
		if err == nil {
			return
		}
		for _, e := range err.(Errors) {
			if !strings.HasPrefix(e.Error(), "f.toml:") || e.(*Problem).Line < 1 {
				t.Fatalf("problem without a line: %q", e)
			}
		}
	})
}
