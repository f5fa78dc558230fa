package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

var helpCmd = &command{
	name:  "help",
	usage: "[COMMAND]",
	help:  "list the commands, or show one's usage, flags and exit status",
}

func init() {
	helpCmd.run = runHelp
	register(helpCmd)
}

// daemonCommands talk to the daemon's control socket, so they may exit 3
// when it is not running. (trust and untrust do only for the current
// network; with an SSID they edit the policy files.)
var daemonCommands = map[string]bool{"status": true, "up": true, "down": true,
	"trust": true, "untrust": true, "reload": true}

func runHelp(e *env, args []string) error {
	fs, _ := newFlags(e, helpCmd)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
		printUsage(e.stdout)
		return nil
	case 1:
		c, ok := commands[fs.Arg(0)]
		if !ok {
			return usagef("unknown command %q", fs.Arg(0))
		}
		fs := flagsOf(c)
		if fs == nil {
			return fmt.Errorf("%s declares no flags", c.name)
		}
		writeCommandHelp(e.stdout, c, fs)
		return nil
	default:
		return usagef("at most one COMMAND")
	}
}

// flagsOf returns c's flag set without running c: every command declares
// its flags (newFlags) and parses them before it does anything else, and
// --help stops it there. Nil if c made no flag set.
func flagsOf(c *command) *flag.FlagSet {
	e := &env{ctx: context.Background(), stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard,
		log: slog.New(slog.DiscardHandler)}
	if err := c.run(e, []string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return e.flags
}

// flagInfo is one flag as help, completions and the man page show it.
type flagInfo struct {
	name     string
	arg      string // the value's name ("FILE"), "" for a boolean flag
	optional bool   // the value may be left out (--bssid alone pins the current)
	usage    string // the usage text, backquotes removed
	def      string // the default, "" when it is the zero value
}

// flagInfos lists fs's flags in name order.
func flagInfos(fs *flag.FlagSet) []flagInfo {
	var out []flagInfo
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		fi := flagInfo{name: f.Name, arg: arg, usage: usage}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			fi.optional = arg != "" // a boolean that also takes a value
		} else if arg == "" || arg == "string" || arg == "value" {
			fi.arg = "VALUE"
		} else if arg == "int" || arg == "uint" {
			fi.arg = "N"
		}
		switch f.DefValue {
		case "", "false", "0", "[]":
		default:
			fi.def = f.DefValue
		}
		out = append(out, fi)
	})
	return out
}

// synopsis is "--name", "--name VALUE" or "--name[=VALUE]".
func (f flagInfo) synopsis() string {
	switch {
	case f.arg == "":
		return "--" + f.name
	case f.optional:
		return "--" + f.name + "[=" + f.arg + "]"
	default:
		return "--" + f.name + " " + f.arg
	}
}

// choices are the words a value may be, when its name lists them
// ("wifi|ethernet").
func (f flagInfo) choices() []string {
	if !strings.Contains(f.arg, "|") {
		return nil
	}
	return strings.Split(f.arg, "|")
}

// takesFile says whether the value is a path, for completions.
func (f flagInfo) takesFile() bool {
	return strings.HasSuffix(f.arg, "FILE") || f.arg == "PATH" || f.arg == "DIR"
}

// exitCodes are the exit statuses of c, in order.
func exitCodes(c *command) [][2]string {
	codes := [][2]string{{"0", "success"}, {"1", "failure, with a one-line reason on standard error"},
		{"2", "usage error"}}
	if daemonCommands[c.name] {
		codes = append(codes, [2]string{"3", "the daemon is not running (its control socket is missing or refuses connections)"})
	}
	return codes
}

// writeCommandHelp is what "roamtun help CMD" and "roamtun CMD --help" print.
func writeCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: roamtun %s %s\n\n%s\n", c.name, c.usage, c.help)
	infos := flagInfos(fs)
	if len(infos) > 0 {
		fmt.Fprintln(w, "\nflags (before or after the arguments; \"--\" ends them):")
		width := 0
		for _, f := range infos {
			width = max(width, len(f.synopsis()))
		}
		for _, f := range infos {
			fmt.Fprintf(w, "  %-*s  %s", width, f.synopsis(), f.usage)
			if f.def != "" {
				fmt.Fprintf(w, " (default %s)", f.def)
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w, "\nexit status:")
	for _, ec := range exitCodes(c) {
		fmt.Fprintf(w, "  %s  %s\n", ec[0], ec[1])
	}
}

// interleave moves the flags in args, each with its value, ahead of the
// positional arguments, so that flags may follow them as well as precede
// them: "connect home --once" is "connect --once home". A flag that is not
// boolean takes the next argument as its value, as the flag package does;
// "--" ends the flags and a lone "-" is positional. Unknown flags stay
// among the flags, for the flag package to report.
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimPrefix(a[1:], "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if len(pos) == 0 {
		return flags
	}
	return append(append(flags, "--"), pos...)
}
