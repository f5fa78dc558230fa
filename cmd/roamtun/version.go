package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is stamped by the Makefile (-ldflags "-X main.version=..."): the
// release or Debian package version. A plain `go build` leaves "dev".
var version = "dev"

func init() {
	register(&command{name: "version", usage: "[--config FILE]",
		help: "print the version, the module version and the commit it was built from", run: runVersion})
}

func runVersion(e *env, args []string) error {
	fs, _ := newFlags(e, commands["version"])
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("version takes no arguments")
	}
	bi, _ := debug.ReadBuildInfo()
	printVersion(e.stdout, version, bi)
	return nil
}

// printVersion writes "roamtun VERSION" and, from the build info when the
// binary carries it, the module version, the VCS revision and the toolchain.
func printVersion(w io.Writer, v string, bi *debug.BuildInfo) {
	modVersion := ""
	if bi != nil {
		modVersion = bi.Main.Version
	}
	if v == "dev" && modVersion != "" && modVersion != "(devel)" {
		v = modVersion
	}
	fmt.Fprintf(w, "roamtun %s\n", v)
	if bi == nil {
		return
	}
	if bi.Main.Path != "" {
		fmt.Fprintf(w, "module  %s %s\n", bi.Main.Path, modVersion)
	}
	var rev, at, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = " (modified)"
			}
		}
	}
	if rev != "" {
		fmt.Fprintf(w, "commit  %s %s%s\n", rev, at, modified)
	}
	fmt.Fprintf(w, "go      %s %s/%s\n", bi.GoVersion, runtime.GOOS, runtime.GOARCH)
}
