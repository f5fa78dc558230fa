package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/internal/tomlfile"
	"github.com/roamtun/roamtun/policy"
)

func init() {
	register(&command{name: "check", usage: "[--json] [--config FILE]",
		help: "validate the configuration, the files it names and the trust policy: every problem, in one run", run: runCheck})
}

// errReported is returned after the problems have been printed already, so
// that main exits 1 without repeating them.
type errReported struct{ n int }

func (e errReported) Error() string { return fmt.Sprintf("%d problem(s) found", e.n) }

// runCheck reports every problem it can find in one run: the config's and
// every policy file's syntax, types, unknown keys and values, the files and
// programs the config names, and rules that cannot be meant (warnings). It
// exits 1 if any problem is an error; warnings alone exit 0.
func runCheck(e *env, args []string) error {
	fs, cfgPath := newFlags(e, commands["check"])
	asJSON := fs.Bool("json", false, "print the problems as a JSON array of {\"file\",\"line\",\"severity\",\"message\"}")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	problems, summary := checkAll(*cfgPath)
	nerr := 0
	for _, p := range problems {
		if p.Severity == tomlfile.SeverityError {
			nerr++
		}
	}
	if *asJSON {
		if problems == nil {
			problems = []*tomlfile.Problem{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(problems); err != nil {
			return fmt.Errorf("writing JSON: %w", err)
		}
	} else {
		for _, p := range problems {
			fmt.Fprintln(e.stderr, p)
		}
		if nerr == 0 {
			fmt.Fprintln(e.stdout, summary)
		}
	}
	if nerr > 0 {
		return errReported{nerr}
	}
	return nil
}

// checkAll runs every check on the config at path and the policy it names.
// It goes on past every problem it can: a broken config still names a
// policy_dir (the default one if it cannot be read) whose files are checked.
func checkAll(path string) (problems []*tomlfile.Problem, summary string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return []*tomlfile.Problem{{File: path, Severity: tomlfile.SeverityError,
			Message: fmt.Sprintf("reading config: %v", err)}}, ""
	}
	cfg, problems, complete := config.Inspect(path, data)
	problems = append(problems, config.Check(cfg)...)
	profiles := policyProfiles(cfg)
	if !complete {
		profiles = nil // profiles after the syntax error are unknown: do not call rules' profiles missing
	}
	pol, pp := policy.InspectDir(cfg.Daemon.PolicyDir, profiles)
	problems = append(problems, pp...)
	tomlfile.Sort(problems, append([]string{path}, pol.Files...))
	nwarn := 0
	for _, p := range problems {
		if p.Severity == tomlfile.SeverityWarning {
			nwarn++
		}
	}
	summary = fmt.Sprintf("OK: %d profile(s), %d rule(s) in %d file(s) under %s; default: %s",
		len(cfg.Profiles), len(pol.Rules), len(pol.Files), cfg.Daemon.PolicyDir, describeDefault(pol))
	if nwarn > 0 {
		summary += fmt.Sprintf("; %d warning(s)", nwarn)
	}
	return problems, summary
}

func describeDefault(p *policy.Policy) string {
	s := string(p.Default.Action)
	if p.Default.Profile != "" {
		s += " (profile " + p.Default.Profile + ")"
	}
	if p.Default.File == "" {
		return s + " [built-in]"
	}
	return fmt.Sprintf("%s [%s:%d]", s, p.Default.File, p.Default.Line)
}

// policyProfiles tells the policy loader which profiles exist and where
// their pinned host keys are (for verify).
func policyProfiles(cfg *config.Config) policy.Profiles {
	out := policy.Profiles{}
	for n, p := range cfg.Profiles {
		kh := p.KnownHosts
		if kh != "" && !filepath.IsAbs(kh) {
			kh = filepath.Join(filepath.Dir(cfg.Path), kh)
		}
		out[n] = kh
	}
	return out
}

// loadPolicy loads the configuration and the policy it points at.
func loadPolicy(path string) (*config.Config, *policy.Policy, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	pol, err := policy.Load(cfg.Daemon.PolicyDir, policyProfiles(cfg))
	if err != nil {
		return nil, nil, err
	}
	return cfg, pol, nil
}
