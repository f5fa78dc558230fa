package policy

import (
	"strconv"
	"strings"
	"testing"
)

func TestLint(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // "LINE: substring" per warning, in order
	}{
		{"clean", homeFile, nil},
		{"examples", homeFile + laterFile, []string{`42: rule "old-wep": trusts a network with security "wep" by its name alone`}},
		{"wifi rule wanting wired security", "[[rule]]\ninterface = \"wifi\"\nssid = \"a\"\nsecurity = [\"none\"]\naction = \"trust\"\n",
			[]string{`1: can never match: no Wi-Fi network has security "none"`}},
		{"wired rule wanting wifi security", "[[rule]]\ninterface = \"ethernet\"\nsecurity = [\"wpa2\", \"open\"]\naction = \"tunnel\"\n",
			[]string{`1: can never match: no wired network has security "wpa2", "open"`}},
		{"wired rule with ssid", "[[rule]]\ninterface = \"ethernet\"\nssid = \"Home\"\naction = \"block\"\n",
			[]string{"1: can never match: a wired network has no SSID or BSSID"}},
		{"catch-all", "[[rule]]\nssid = \"a\"\naction = \"block\"\n\n[[rule]]\nname = \"all\"\naction = \"tunnel\"\n\n[[rule]]\nssid = \"b\"\naction = \"block\"\n",
			[]string{"5: has no match criteria, so it matches every network: the 1 rule(s) after it"}},
		{"trust everything protected", "[[rule]]\naction = \"trust\"\n",
			[]string{"1: matches every protected network"}},
		{"trust open by name", "[[rule]]\nssid = \"Home\"\nsecurity = [\"open\"]\naction = \"trust\"\n",
			[]string{`1: trusts a network with security "open" by its name alone`}},
		{"trust open pinned", "[[rule]]\nssid = \"Home\"\nsecurity = [\"open\"]\nbssid = [\"aa:bb:cc:dd:ee:ff\"]\naction = \"trust\"\n", nil},
		{"trust every wire", "[[rule]]\ninterface = \"ethernet\"\nsecurity = [\"none\"]\naction = \"trust\"\n",
			[]string{"1: trusts every unprotected wired network"}},
		{"wired pinned", "[[rule]]\ninterface = \"ethernet\"\ngateway_mac = [\"00:11:22:33:44:55\"]\naction = \"trust\"\n", nil},
		{"identical", "[[rule]]\nssid = \"Cafe\"\naction = \"tunnel\"\n[[rule]]\nssid = \"Cafe\"\naction = \"block\"\n",
			[]string{`4: can never match: rule "#1" (l.toml:1) comes first`}},
		{"glob shadows", "[[rule]]\nssid = \"Cafe-*\"\naction = \"tunnel\"\n[[rule]]\nssid = \"Cafe-1\"\nbssid = [\"aa:bb:cc:dd:ee:ff\"]\naction = \"block\"\n",
			[]string{`4: can never match: rule "#1"`}},
		{"narrower first is fine", "[[rule]]\nssid = \"Cafe-1\"\naction = \"tunnel\"\n[[rule]]\nssid = \"Cafe-*\"\naction = \"block\"\n", nil},
		{"pin first is fine", "[[rule]]\nssid = \"Home\"\nbssid = [\"aa:bb:cc:dd:ee:*\"]\naction = \"trust\"\n[[rule]]\nssid = \"Home\"\naction = \"block\"\n", nil},
		{"wider pin shadows", "[[rule]]\nssid = \"Home\"\nbssid = [\"aa:bb:cc:dd:ee:*\"]\naction = \"trust\"\n[[rule]]\nssid = \"Home\"\nbssid = [\"aa:bb:cc:dd:ee:01\"]\naction = \"trust\"\n",
			[]string{`5: can never match`}},
		{"verify first is fine", "[[rule]]\nssid = \"Home\"\nverify = \"10.0.0.1:22\"\naction = \"trust\"\n[[rule]]\nssid = \"Home\"\naction = \"trust\"\n", nil},
		{"security subset shadowed", "[[rule]]\nssid = \"H\"\naction = \"trust\"\n[[rule]]\nssid = \"H\"\nsecurity = [\"wpa3\"]\naction = \"block\"\n",
			[]string{"4: can never match"}},
		{"security superset is fine", "[[rule]]\nssid = \"H\"\naction = \"trust\"\n[[rule]]\nssid = \"H\"\naction = \"block\"\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, problems := Inspect([]File{{Path: "l.toml", Data: []byte(tt.src)}}, testProfiles)
			if len(p.Rules) == 0 {
				t.Fatal("no rules")
			}
			var got []string
			for _, pr := range problems {
				if pr.Severity != "warning" {
					t.Fatalf("error: %v", pr)
				}
				got = append(got, pr.Error())
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d warnings, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				line, sub, _ := strings.Cut(w, ": ")
				if !strings.HasPrefix(got[i], "l.toml:"+line+": warning: ") || !strings.Contains(got[i], sub) {
					t.Errorf("warning %q, want l.toml:%s …%s…", got[i], line, sub)
				}
			}
		})
	}
}

// TestInspectEveryFile: problems in several files all come back at once,
// with their lines, and the good rules are kept.
func TestInspectEveryFile(t *testing.T) {
	files := []File{
		{Path: "a.toml", Data: []byte("[[rule]]\nssid = \"ok\"\naction = \"block\"\n\n[[rule]\n")},
		{Path: "b.toml", Data: []byte("[[rule]]\nssid = 5\naction = \"trust\"\n[[rule]]\nssdi = \"x\"\naction = \"trust\"\n")},
		{Path: "c.toml", Data: []byte("[[rule]]\nssid = \"x\"\nbssid = [\"aa:bb:cc:dd:ee:ff\",\n  \"nope\"]\naction = \"trust\"\n[default]\naction = \"allow\"\n")},
		{Path: "d.toml", Data: []byte("[[rule]]\nssid = \"fine\"\naction = \"tunnel\"\n")},
	}
	p, problems := Inspect(files, testProfiles)
	var got []string
	for _, pr := range problems {
		got = append(got, pr.File+":"+strconv.Itoa(pr.Line))
	}
	want := "a.toml:5 b.toml:2 b.toml:5 c.toml:4 c.toml:7"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %s, want %s\n%v", strings.Join(got, " "), want, problems)
	}
	if len(p.Rules) != 2 || p.Rules[0].SSID != "ok" || p.Rules[1].SSID != "fine" {
		t.Fatalf("rules %+v", p.Rules)
	}
	if _, err := Parse(files, testProfiles); err == nil || strings.Count(err.Error(), "\n") != 4 {
		t.Fatalf("Parse: %v", err)
	}
}
