package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/internal/tomlfile"
	"github.com/roamtun/roamtun/policy"
)

func init() {
	register(&command{name: "check", usage: "[--config FILE]",
		help: "validate the configuration and the trust policy", run: runCheck})
}

// errReported is returned after the problems have been printed already, so
// that main exits 1 without repeating them.
type errReported struct{ n int }

func (e errReported) Error() string { return fmt.Sprintf("%d problem(s) found", e.n) }

func runCheck(e *env, args []string) error {
	fs, cfgPath := newFlags(e, commands["check"])
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return errReported{printErrors(e, err)}
	}
	pol, err := policy.Load(cfg.Daemon.PolicyDir, policyProfiles(cfg))
	if err != nil {
		return errReported{printErrors(e, err)}
	}
	fmt.Fprintf(e.stdout, "OK: %d profile(s), %d rule(s) in %d file(s) under %s; default: %s\n",
		len(cfg.Profiles), len(pol.Rules), len(pol.Files), cfg.Daemon.PolicyDir, describeDefault(pol))
	return nil
}

// printErrors prints one problem per line on stderr and returns how many.
func printErrors(e *env, err error) int {
	var list tomlfile.Errors
	if !errors.As(err, &list) {
		list = tomlfile.Errors{err}
	}
	for _, x := range list {
		fmt.Fprintln(e.stderr, x)
	}
	return len(list)
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
