// Command keysmith is the Keysmith server and its admin CLI; `keysmith
// --help` lists the commands and `keysmith COMMAND --help` explains one.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/alecthomas/kong"

	"keysmith/app"
	"keysmith/config"
	"keysmith/keys"
	"keysmith/validate"
)

// version is the release this binary is, when the build says so with
// -ldflags "-X main.version=v1.2.3"; otherwise the module's build
// information tells.
var version string

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // the command line or the configuration is wrong
)

// commandLine is the grammar kong parses os.Args into.
type commandLine struct {
	Version kong.VersionFlag `help:"Print the version and exit."`

	Serve   serveCmd   `cmd:"" default:"1" help:"Run the dashboard and API (the default)."`
	Migrate migrateCmd `cmd:"" help:"Apply database migrations and exit."`
	User    struct {
		Create userCreateCmd `cmd:"" help:"Create a user with a personal workspace."`

		Reset2FA userReset2FACmd `cmd:"" name:"reset-2fa" help:"Turn two-step verification off for a locked-out user: authenticator app, recovery codes and passkeys (audited, mailed to the user)."`
	} `cmd:"" help:"Manage users."`
	Key struct {
		Create keyCreateCmd `cmd:"" help:"Create an API key and print only its secret."`
	} `cmd:"" help:"Manage API keys."`
	SigningKey struct {
		Rotate signingKeyRotateCmd `cmd:"" help:"Start signing tokens with a new key; the old one verifies until its tokens expire."`
	} `cmd:"" name:"signing-key" help:"Manage the keys that sign the tokens derived from API keys."`
	OAuthClient struct {
		Create oauthClientCreateCmd `cmd:"" help:"Register an OAuth app and print its client_id and client_secret as JSON."`
	} `cmd:"" name:"oauth-client" help:"Manage the OAuth apps that act for users."`
}

const description = `Self-hosted API-key management: the dashboard and API, and the admin commands.

Configuration comes from KEYSMITH_* environment variables (see README.md); each command reads only the ones it needs. Exit status: 0 done, 1 failed, 2 a wrong command line or configuration.`

// streams are what a command reads and writes.
type streams struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// run parses the command line, runs the command and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var cl commandLine
	// --help and --version print and call Exit(0), and then kong parses on
	// (and may complain of missing flags): the first status wins.
	exited := -1
	parser, err := kong.New(&cl,
		kong.Name("keysmith"),
		kong.Description(description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(status int) {
			if exited < 0 {
				exited = status
			}
		}),
		kong.Vars{"version": describeVersion(version, buildInfo())},
	)
	if err != nil {
		panic(err) // the grammar above is malformed
	}
	ctx, err := parser.Parse(args)
	if exited >= 0 {
		return exited
	}
	if err != nil {
		fmt.Fprintf(stderr, "keysmith: %s\nRun '%s --help' for usage.\n", err, helpCommand(err))
		return exitUsage
	}
	if err := ctx.Run(&streams{stdin: stdin, stdout: stdout, stderr: stderr}); err != nil {
		report(stderr, err)
		if errors.As(err, new(usageError)) {
			return exitUsage
		}
		return exitError
	}
	return exitOK
}

// helpCommand is the command whose --help explains a parse error, such as
// "keysmith key create".
func helpCommand(err error) string {
	var parseErr *kong.ParseError
	if errors.As(err, &parseErr) && parseErr.Context != nil {
		if node := parseErr.Context.Selected(); node != nil {
			return node.FullPath()
		}
	}
	return "keysmith"
}

// usageError is a mistake in the command line or the configuration, found
// after kong parsed it: exit status 2.
type usageError struct{ error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// loadConfig reads KEYSMITH_* and refuses only the invalid settings among
// those the command reads: a migration sends no mail, so it must not need
// SMTP.
func loadConfig(settings ...string) (config.Config, error) {
	for _, name := range settings {
		if !slices.ContainsFunc(config.Variables, func(v config.Variable) bool { return v.Name == name }) {
			panic("keysmith: no setting " + name) // a typo would skip its check
		}
	}
	cfg, err := config.FromEnv()
	var problems config.Problems
	if errors.As(err, &problems) {
		err = problems.Concerning(settings...)
	}
	return cfg, invalidConfig(err)
}

func invalidConfig(err error) error {
	if err == nil {
		return nil
	}
	return usagef("invalid configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

// report writes err for a terminal. The domain's field errors name form
// fields and read as form hints; here they name the flag that carries the
// field.
func report(w io.Writer, err error) {
	var fields validate.Errors
	var forbidden *keys.ForbiddenError
	switch {
	case errors.As(err, &fields):
		for _, field := range slices.Sorted(maps.Keys(fields)) {
			fmt.Fprintf(w, "keysmith: --%s: %s\n", flagFor(field), clause(fields[field]))
		}
	case errors.As(err, &forbidden):
		fmt.Fprintf(w, "keysmith: not allowed: %s\n", forbidden.Reason)
	default:
		fmt.Fprintf(w, "keysmith: %v\n", err)
	}
}

// flagFor names the flag that sets a form field of the domain's input.
func flagFor(field string) string {
	switch field {
	case "environment":
		return "env"
	case "expires_in", "expires_on":
		return "expires"
	case "scopes":
		return "permission" // the CLI chooses scopes through a permission preset
	}
	return strings.ReplaceAll(field, "_", "-")
}

// clause turns a form hint ("Use at least 12 characters.") into the tail
// of a terminal message ("use at least 12 characters").
func clause(hint string) string {
	hint = strings.TrimSuffix(hint, ".")
	r, size := utf8.DecodeRuneInString(hint)
	return string(unicode.ToLower(r)) + hint[size:]
}

func buildInfo() *debug.BuildInfo {
	info, _ := debug.ReadBuildInfo()
	return info
}

// describeVersion is what --version prints: the release set at link time,
// else the module version Go recorded ("(devel)" for a plain build), and
// the commit it was built from when Go recorded one.
func describeVersion(release string, info *debug.BuildInfo) string {
	if release == "" && info != nil {
		release = info.Main.Version
	}
	if release == "" {
		release = "(devel)"
	}
	var revision, at string
	modified := false
	if info != nil {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value[:min(12, len(s.Value))]
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if revision == "" {
		return "keysmith " + release
	}
	details := []string{"commit " + revision}
	if at != "" {
		details = append(details, at)
	}
	if modified {
		details = append(details, "modified")
	}
	return fmt.Sprintf("keysmith %s (%s)", release, strings.Join(details, ", "))
}

type serveCmd struct{}

// Run serves the dashboard and API until SIGINT or SIGTERM.
func (serveCmd) Run(s *streams) error {
	cfg, err := config.FromEnv()
	if err != nil {
		return invalidConfig(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("%w (KEYSMITH_ADDR chooses another address)", err)
	}
	// The address actually listened on: KEYSMITH_ADDR may name any port,
	// and KEYSMITH_BASE_URL, which email links use, is often a proxy's.
	// Unset, links point where the server listens.
	public := listenURL(ln.Addr())
	fmt.Fprintf(s.stdout, "Keysmith is running at %s\n", public)
	if cfg.BaseURLSet {
		public = cfg.BaseURL
		fmt.Fprintf(s.stdout, "Public URL (KEYSMITH_BASE_URL): %s\n", public)
	} else {
		cfg.BaseURL = public
	}
	a, err := app.New(cfg, app.Options{})
	if err != nil {
		_ = ln.Close()
		if errors.As(err, new(app.ConfigError)) {
			return invalidConfig(err)
		}
		return err
	}
	if cfg.Demo {
		ok, err := a.SeedDemo(ctx)
		if err != nil {
			_ = a.Close()
			return fmt.Errorf("seed demo account: %w", err)
		}
		if ok {
			fmt.Fprintf(s.stdout, "Demo login: %s / %s\n", app.DemoEmail, app.DemoPassword)
		}
	}
	if a.Mailbox != nil {
		fmt.Fprintf(s.stdout, "No SMTP configured: emails appear at %s/dev/mailbox\n", public)
	}
	return a.Run(ctx, ln)
}

// listenURL is a link to a listener from this machine; a listener on all
// interfaces is reached as localhost.
func listenURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	host := "localhost"
	if len(tcp.IP) > 0 && !tcp.IP.IsUnspecified() {
		host = tcp.IP.String()
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}
