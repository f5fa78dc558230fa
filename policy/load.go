package policy

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/roamtun/roamtun/internal/tomlfile"
)

type rawFile struct {
	Rule    []rawRule   `toml:"rule"`
	Default *rawDefault `toml:"default"`
}

type rawRule struct {
	Name       *string  `toml:"name"`
	Interface  *string  `toml:"interface"`
	SSID       *string  `toml:"ssid"`
	SSIDHex    *string  `toml:"ssid_hex"` // for SSIDs that are not UTF-8 (TOML strings must be)
	BSSID      []string `toml:"bssid"`
	Security   []string `toml:"security"`
	GatewayMAC []string `toml:"gateway_mac"`
	Verify     *string  `toml:"verify"`
	Action     *string  `toml:"action"`
	Profile    *string  `toml:"profile"`
}

type rawDefault struct {
	Action  *string `toml:"action"`
	Profile *string `toml:"profile"`
}

// Load reads dir/*.toml in name order and validates them. A missing dir is
// an empty policy (built-in default). Every problem is reported, each as
// "FILE:LINE: key: message", in a tomlfile.Errors.
func Load(dir string, profiles Profiles) (*Policy, error) {
	names, err := policyFiles(dir)
	if err != nil {
		return nil, err
	}
	files := make([]File, 0, len(names))
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("reading policy: %w", err)
		}
		files = append(files, File{Path: n, Data: data})
	}
	return Parse(files, profiles)
}

// policyFiles lists dir/*.toml sorted by name; a missing dir has none.
func policyFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading policy dir: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".toml") && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// File is one policy file's name and contents, for Parse.
type File struct {
	Path string
	Data []byte
}

// Parse validates files in the order given (Load passes them in name order).
// Every problem in every file is reported, each as "FILE:LINE: message", in
// a tomlfile.Errors.
func Parse(files []File, profiles Profiles) (*Policy, error) {
	p, docs := parse(files, profiles)
	var errs tomlfile.Errors
	for _, d := range docs {
		if err := d.Err(); err != nil {
			errs = append(errs, err.(tomlfile.Errors)...)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// Inspect is Parse for `roamtun check`: it returns the policy as far as it
// could be read (the rules without errors), and every problem: the errors
// Parse reports and warnings about rules that are legal but almost surely
// not what was meant (see Lint), in file and line order.
func Inspect(files []File, profiles Profiles) (*Policy, []*tomlfile.Problem) {
	p, docs := parse(files, profiles)
	var out []*tomlfile.Problem
	for _, d := range docs {
		out = append(out, d.Problems()...)
	}
	out = append(out, p.Lint()...)
	tomlfile.Sort(out, p.Files)
	return p, out
}

// InspectDir is Inspect of dir/*.toml, read as Load reads them. A file that
// cannot be read is a problem of its own; a missing dir has no files.
func InspectDir(dir string, profiles Profiles) (*Policy, []*tomlfile.Problem) {
	names, err := policyFiles(dir)
	if err != nil {
		return &Policy{hosts: profiles, Default: builtinDefault(profiles)},
			[]*tomlfile.Problem{{File: dir, Severity: tomlfile.SeverityError, Message: err.Error()}}
	}
	var (
		files []File
		bad   []*tomlfile.Problem
	)
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			bad = append(bad, &tomlfile.Problem{File: n, Severity: tomlfile.SeverityError, Message: fmt.Sprintf("reading policy: %v", err)})
			continue
		}
		files = append(files, File{Path: n, Data: data})
	}
	p, problems := Inspect(files, profiles)
	return p, append(bad, problems...)
}

// parse validates every file, keeping the rules without errors; each
// file's problems are in its Doc.
func parse(files []File, profiles Profiles) (*Policy, []*tomlfile.Doc) {
	p := &Policy{hosts: profiles}
	docs := make([]*tomlfile.Doc, 0, len(files))
	for _, f := range files {
		p.Files = append(p.Files, f.Path)
		var raw rawFile
		doc, _ := tomlfile.Decode(f.Path, f.Data, &raw)
		docs = append(docs, doc)
		for i := range raw.Rule {
			if r, ok := raw.Rule[i].validate(doc, i, profiles); ok {
				p.Rules = append(p.Rules, r)
			}
		}
		if raw.Default != nil {
			p.setDefault(doc, raw.Default, profiles)
		}
	}
	if p.Default.Action == "" {
		p.Default = builtinDefault(profiles)
	}
	return p, docs
}

func builtinDefault(profiles Profiles) Default {
	return Default{Action: ActionTunnel, Profile: onlyProfile(profiles)}
}

func onlyProfile(p Profiles) string {
	if len(p) != 1 {
		return ""
	}
	for n := range p {
		return n
	}
	return ""
}

func (p *Policy) setDefault(doc *tomlfile.Doc, d *rawDefault, profiles Profiles) {
	errAt := func(k string, format string, args ...any) {
		doc.Errorf([]string{"default", k}, "%s: %s", k, fmt.Sprintf(format, args...))
	}
	if p.Default.File != "" {
		doc.Errorf([]string{"default"}, "second [default]; the first is at %s:%d", p.Default.File, p.Default.Line)
		return
	}
	def := Default{Action: ActionTunnel, File: doc.Path, Line: doc.Line("default")}
	if d.Action != nil {
		a, ok := parseAction(*d.Action)
		if !ok {
			errAt("action", "must be trust, tunnel or block, not %q", *d.Action)
		}
		def.Action = a
	}
	if d.Profile != nil {
		def.Profile = *d.Profile
		if profiles != nil && !hasProfile(profiles, def.Profile) {
			errAt("profile", "no profile %q in the configuration", def.Profile)
		}
	} else {
		def.Profile = onlyProfile(profiles)
	}
	p.Default = def
}

func hasProfile(p Profiles, name string) bool { _, ok := p[name]; return ok }

func parseAction(s string) (Action, bool) {
	switch a := Action(s); a {
	case ActionTrust, ActionTunnel, ActionBlock:
		return a, true
	}
	return "", false
}

func (raw *rawRule) validate(doc *tomlfile.Doc, i int, profiles Profiles) (Rule, bool) {
	idx := strconv.Itoa(i)
	ok := true
	errAt := func(k string, format string, args ...any) {
		ok = false
		doc.Errorf([]string{"rule", idx, k}, "%s: %s", k, fmt.Sprintf(format, args...))
	}
	// errAtN is errAt for the n-th element of a list.
	errAtN := func(k string, n int, format string, args ...any) {
		ok = false
		doc.Errorf([]string{"rule", idx, k, strconv.Itoa(n)}, "%s: %s", k, fmt.Sprintf(format, args...))
	}
	r := Rule{File: doc.Path, Line: doc.Line("rule", idx), Interface: "any"}
	r.Name = fmt.Sprintf("#%d", i+1)
	if raw.Name != nil {
		r.Name = *raw.Name
		if r.Name == "" || r.Name == DefaultRule {
			errAt("name", "must be non-empty and not %q", DefaultRule)
		}
	}
	if raw.Interface != nil {
		r.Interface = *raw.Interface
		if !slices.Contains([]string{"wifi", "ethernet", "any"}, r.Interface) {
			errAt("interface", "must be wifi, ethernet or any, not %q", r.Interface)
		}
	}
	raw.validateSSID(&r, errAt)
	r.BSSID = macGlobs(raw.BSSID, "bssid", errAt, errAtN)
	r.GatewayMAC = macGlobs(raw.GatewayMAC, "gateway_mac", errAt, errAtN)
	for n, s := range raw.Security {
		k, known := knownKinds[strings.ToLower(s)]
		if !known {
			errAtN("security", n, "unknown security kind %q (known: none, open, wep, wpa, wpa2, wpa3, 8021x)", s)
		}
		r.Security = append(r.Security, k)
	}
	if raw.Security != nil && len(raw.Security) == 0 {
		errAt("security", "empty list matches nothing; leave it out instead")
	}
	if raw.Action == nil {
		if doc.Complete() {
			errAt("action", "missing (trust, tunnel or block)")
		}
		ok = false
	} else if a, ok := parseAction(*raw.Action); !ok {
		errAt("action", "must be trust, tunnel or block, not %q", *raw.Action)
	} else {
		r.Action = a
	}
	if raw.Profile != nil {
		r.Profile = *raw.Profile
		if profiles != nil && !hasProfile(profiles, r.Profile) {
			errAt("profile", "no profile %q in the configuration", r.Profile)
		}
	}
	if raw.Verify != nil {
		r.Verify = *raw.Verify
		if err := checkHostPort(r.Verify); err != nil {
			errAt("verify", "%v", err)
		} else if r.Action != ActionTrust && r.Action != "" {
			errAt("verify", "only a trust rule can be verified")
		}
	}
	// A key of this rule with the wrong type or an unknown one: what is left
	// of the rule is not what was meant (and would match more).
	if doc.Reported("rule", idx) {
		ok = false
	}
	return r, ok
}

func (raw *rawRule) validateSSID(r *Rule, errAt func(string, string, ...any)) {
	switch {
	case raw.SSID != nil && raw.SSIDHex != nil:
		errAt("ssid_hex", "give ssid or ssid_hex, not both")
	case raw.SSIDHex != nil:
		b, err := hex.DecodeString(strings.ReplaceAll(*raw.SSIDHex, ":", ""))
		if err != nil || len(b) > 32 {
			errAt("ssid_hex", "must be up to 32 bytes in hex, not %q", *raw.SSIDHex)
		}
		r.SSID, r.HasSSID = string(b), true
	case raw.SSID != nil:
		r.SSID, r.HasSSID = *raw.SSID, true
		if len(r.SSID) > 32 && !strings.ContainsAny(r.SSID, `*?[\`) {
			errAt("ssid", "longer than 32 bytes: no network can have it")
		}
		if _, err := path.Match(r.SSID, ""); err != nil {
			errAt("ssid", "bad glob %q: %v", r.SSID, err)
		}
		r.SSIDGlob = strings.ContainsAny(r.SSID, `*?[\`)
	}
}

var macPartRE = regexp.MustCompile(`^([0-9a-f?]{2}|[0-9a-f?]?\*|\*[0-9a-f?]?)$`)

// macGlobs validates MAC globs such as "aa:bb:cc:dd:ee:*" (lower-cased).
// Six colon-separated octets of hex digits, ? and *; fewer octets only when
// the last is "*" (which then matches the rest: path.Match's * spans colons).
func macGlobs(list []string, key string, errAt func(string, string, ...any), errAtN func(string, int, string, ...any)) []string {
	out := make([]string, 0, len(list))
	for n, g := range list {
		g = strings.ToLower(g)
		parts := strings.Split(g, ":")
		ok := len(parts) == 6 || len(parts) < 6 && parts[len(parts)-1] == "*"
		for _, p := range parts {
			ok = ok && macPartRE.MatchString(p)
		}
		if _, err := path.Match(g, ""); !ok || err != nil {
			errAtN(key, n, "bad MAC address glob %q (want e.g. aa:bb:cc:dd:ee:ff or aa:bb:cc:*)", g)
			continue
		}
		out = append(out, g)
	}
	if list != nil && len(list) == 0 {
		errAt(key, "empty list matches nothing; leave it out instead")
	}
	return out
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want HOST:PORT, not %q", s)
	}
	if host == "" {
		return fmt.Errorf("want HOST:PORT, not %q: empty host", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("want HOST:PORT, not %q: bad port", s)
	}
	return nil
}
