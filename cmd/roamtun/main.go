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

// run dispatches args to a subcommand and maps its result to an exit status:
// 0 success, 1 failure (one line on stderr), 2 usage error.
func run(e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(e.stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "roamtun: unknown command %q\n", args[0])
		printUsage(e.stderr)
		return 2
	}
	if err := refuseCapable(c.name); err != nil {
		fmt.Fprintf(e.stderr, "roamtun %s: %s\n", c.name, err)
		return 1
	}
	err := c.run(e, args[1:])
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "roamtun %s: %s\nusage: roamtun %s %s\n", c.name, ue.msg, c.name, c.usage)
		return 2
	default:
		fmt.Fprintf(e.stderr, "roamtun %s: %s\n", c.name, err)
		return 1
	}
}

func printUsage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: roamtun COMMAND [flags]")
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  %-14s %s\n", n, c.help)
	}
}

// newFlags returns a flag set for a subcommand that reports errors as usage
// errors (exit 2) instead of exiting itself. Every subcommand takes --config.
func newFlags(e *env, c *command) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("roamtun "+c.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: roamtun %s %s\n  %s\n", c.name, c.usage, c.help)
		fs.PrintDefaults()
	}
	cfg := fs.String("config", defaultConfigPath(), "configuration `FILE`")
	return fs, cfg
}

// parseFlags parses args and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{strings.TrimSpace(err.Error())}
	}
	return nil
}

func defaultConfigPath() string {
	if p := os.Getenv("ROAMTUN_CONFIG"); p != "" {
		return p
	}
	return "/etc/roamtun/roamtun.toml"
}
