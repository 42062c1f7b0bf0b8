// Command keysmith is the Keysmith server and its admin CLI:
//
//	keysmith [serve]                                   run the dashboard and API
//	keysmith migrate                                   apply database migrations
//	keysmith user create --email E --password P|-     create a user (- reads stdin)
//	keysmith key create --email E --name N …           create a key, print only its secret
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"keysmith/app"
	"keysmith/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches the sub-command and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	cfg, err := config.FromEnv()
	if err != nil && cmd != "help" {
		fmt.Fprintf(stderr, "keysmith: invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 2
	}
	switch cmd {
	case "serve":
		err = serve(cfg, stdout)
	case "migrate":
		err = migrate(cfg, stdout)
	case "user":
		err = userCommand(cfg, args, stdin, stdout)
	case "key":
		err = keyCommand(cfg, args, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "keysmith: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "keysmith: %v\n", err)
		return 1
	}
	return 0
}

const usage = `Usage:
  keysmith [serve]                                    run the dashboard and API
  keysmith migrate                                    apply database migrations
  keysmith user create --email E --password P [--name N]
                                                      create a user (--password - reads stdin)
  keysmith key create --email E --name N --permission read|write|admin
                      [--env live|test] [--kind sk|pk] [--expires 30d|36h|2027-01-31|never]
                                                      create a key and print only its secret
Configuration comes from KEYSMITH_* environment variables; see README.md.
`

func serve(cfg config.Config, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	a, err := app.New(cfg, app.Options{})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = a.Close()
		return err
	}
	fmt.Fprintf(stdout, "Keysmith is running at %s (listening on %s)\n", cfg.BaseURL, ln.Addr())
	if cfg.Demo {
		ok, err := a.SeedDemo(ctx)
		if err != nil {
			_ = a.Close()
			return fmt.Errorf("seed demo account: %w", err)
		}
		if ok {
			fmt.Fprintf(stdout, "Demo login: %s / %s\n", app.DemoEmail, app.DemoPassword)
		}
	}
	if a.Mailbox != nil {
		fmt.Fprintf(stdout, "No SMTP configured: emails appear at %s/dev/mailbox\n", cfg.BaseURL)
	}
	return a.Run(ctx, ln)
}
