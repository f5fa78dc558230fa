package policy

import (
	"regexp"
	"testing"

	"github.com/roamtun/roamtun/internal/tomlfile"
)

// fuzzErrRE is the form every load error must take: the file, a line > 0.
var fuzzErrRE = regexp.MustCompile(`^fuzz\.toml:[1-9][0-9]*: `)

// FuzzLoad feeds arbitrary files to the loader: it must never panic, and
// every error must name the file and a line.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(homeFile))
	f.Add([]byte(laterFile))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse([]File{{Path: "fuzz.toml", Data: data}}, Profiles{"home": "", "work": ""})
		if err == nil {
			if p == nil {
				t.Fatal("nil policy without error")
			}
			return
		}
		list, ok := err.(tomlfile.Errors)
		if !ok {
			t.Fatalf("error of type %T: %v", err, err)
		}
		for _, e := range list {
			if !fuzzErrRE.MatchString(e.Error()) {
				t.Fatalf("error without FILE:LINE: %q", e.Error())
			}
		}
	})
}
