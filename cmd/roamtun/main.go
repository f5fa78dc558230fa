// Command roamtun watches which network a Linux laptop joins and, on an
// untrusted one, carries all traffic through a PPP link over SSH to the
// user's own server. See DESIGN.md for the command line contract.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/roamtun/roamtun/control"
)

// command is one subcommand. Each lives in its own file and registers itself
// from init, so that main stays a dispatcher with no logic of its own.
type command struct {
	name  string
	usage string // one line: the arguments after the name
	help  string // one line: what it does
	run   func(env *env, args []string) error
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("roamtun: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// env is what a subcommand gets from main: its streams, a logger and a
// context cancelled by SIGINT/SIGTERM. Tests build their own.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
	flags  *flag.FlagSet // set by newFlags: the running command's flags
}

// usageError makes main exit 2 and print the command's usage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{ctx: ctx, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		log: newLogger(os.Stderr, logLevel())}
	os.Exit(run(e, os.Args[1:]))
}

func logLevel() slog.Level {
	if os.Getenv("ROAMTUN_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// Exit statuses, the same for every subcommand (DESIGN.md, roamtun(1)).
const (
	exitOK         = 0 // success
	exitFailure    = 1 // failure, with a one-line reason on stderr
	exitUsage      = 2 // usage error
	exitNotRunning = 3 // the daemon is not running: its socket is missing or refuses connections
)

// run dispatches args to a subcommand and maps its result to an exit status.
func run(e *env, args []string) int {
	if len(args) == 0 {
		printUsage(e.stderr)
		return exitUsage
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "-help" {
		name = "help"
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(e.stderr, "roamtun: unknown command %q\n", args[0])
		printUsage(e.stderr)
		return exitUsage
	}
	if err := refuseCapable(c.name); err != nil {
		fmt.Fprintf(e.stderr, "roamtun %s: %s\n", c.name, err)
		return exitFailure
	}
	err := c.run(e, args[1:])
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "roamtun %s: %s\nusage: roamtun %s %s\n(roamtun help %s: its flags and exit status)\n",
			c.name, ue.msg, c.name, c.usage, c.name)
		return exitUsage
	case errors.Is(err, control.ErrNotRunning):
		fmt.Fprintf(e.stderr, "roamtun %s: %s\n", c.name, err)
		return exitNotRunning
	default:
		fmt.Fprintf(e.stderr, "roamtun %s: %s\n", c.name, err)
		return exitFailure
	}
}

// printUsage lists the commands.
func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: roamtun COMMAND [flags] [arguments]")
	for _, c := range sortedCommands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.help)
	}
	fmt.Fprintln(w, "\"roamtun help COMMAND\" or \"roamtun COMMAND --help\" shows a command's flags and exit status.")
}

func sortedCommands() []*command {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*command, len(names))
	for i, n := range names {
		out[i] = commands[n]
	}
	return out
}

// newFlags returns a flag set for a subcommand that reports errors as usage
// errors (exit 2) instead of exiting itself, and prints the command's help
// on --help. Every subcommand takes --config. The set is kept in e, so that
// help, completions and the man page can list a command's flags by running
// it with --help (see flagsOf).
func newFlags(e *env, c *command) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("roamtun "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run reports the error, once
	fs.Usage = func() { writeCommandHelp(e.stdout, c, fs) }
	e.flags = fs
	cfg := fs.String("config", defaultConfigPath(), "configuration `FILE`")
	return fs, cfg
}

// parseFlags parses args, flags and positional arguments in any order (see
// interleave), and turns flag errors into usage errors. On --help it
// prints the command's help and returns flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	help := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(interleave(fs, args))
	fs.Usage = help
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		help()
		return err
	default:
		return usageError{strings.TrimSpace(err.Error())}
	}
}

func defaultConfigPath() string {
	if p := os.Getenv("ROAMTUN_CONFIG"); p != "" {
		return p
	}
	return "/etc/roamtun/roamtun.toml"
}
