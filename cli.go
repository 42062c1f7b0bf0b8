package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"keysmith/keys"
	"strings"
	"time"

	"keysmith/accounts"
	"keysmith/app"
	"keysmith/clock"
	"keysmith/config"
	"keysmith/models"
)

func migrate(cfg config.Config, stdout io.Writer) error {
	db, applied, err := app.OpenDB(cfg, clock.Real{})
	if err != nil {
		return err
	}
	defer models.Close(db)
	fmt.Fprintf(stdout, "database at schema version %d (%d migrations applied now)\n", models.SchemaVersion(), applied)
	return nil
}

func userCommand(cfg config.Config, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New("usage: keysmith user create --email E --password P [--name N]")
	}
	fs := flag.NewFlagSet("user create", flag.ContinueOnError)
	email := fs.String("email", "", "email address (required)")
	password := fs.String("password", "", "password, or - to read it from standard input (required)")
	name := fs.String("name", "", "display name")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *email == "" || *password == "" {
		return errors.New("user create needs --email and --password")
	}
	if *password == "-" {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		*password = strings.TrimRight(line, "\r\n")
	}

	db, _, err := app.OpenDB(cfg, clock.Real{})
	if err != nil {
		return err
	}
	defer models.Close(db)
	user, err := accounts.New(db, clock.Real{}, cfg.BcryptCost).SignUp(context.Background(), accounts.SignUpInput{
		Email: *email, Name: *name, Password: *password,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created user %s (id %d) with a personal workspace\n", user.Email, user.ID)
	return nil
}

// keyCommand is `keysmith key create`: it prints only the secret, so a
// script can capture it.
func keyCommand(cfg config.Config, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New("usage: keysmith key create --email E --name N --permission read|write|admin [--env live|test] [--kind sk|pk] [--expires 30d|36h|2027-01-31|never] [--rate-limit N]")
	}
	fs := flag.NewFlagSet("key create", flag.ContinueOnError)
	email := fs.String("email", "", "the user creating the key (required)")
	name := fs.String("name", "", "key name (required)")
	perm := fs.String("permission", "read", "read, write or admin")
	env := fs.String("env", "live", "live or test")
	kind := fs.String("kind", "sk", "sk (secret) or pk (publishable)")
	expires := fs.String("expires", "never", "never, days (30d), a duration (36h) or a date (2027-01-31)")
	workspace := fs.Int64("workspace", 0, "workspace id (default: the user's personal workspace)")
	rateLimit := fs.Int("rate-limit", 0, "requests per minute (default: the kind's default; owners and admins only)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *email == "" || *name == "" {
		return errors.New("key create needs --email and --name")
	}
	in := keys.CreateInput{
		Name: *name, Kind: keys.Kind(*kind), Env: keys.Env(*env), Permission: keys.Permission(*perm),
		ExpiresIn: strings.TrimSuffix(*expires, "d"),
	}
	if _, err := time.Parse("2006-01-02", *expires); err == nil {
		in.ExpiresIn, in.ExpiresOn = "custom", *expires
	}

	db, _, err := app.OpenDB(cfg, clock.Real{})
	if err != nil {
		return err
	}
	defer models.Close(db)
	svc, err := app.NewKeys(cfg, db, clock.Real{})
	if err != nil {
		return err
	}
	ctx := context.Background()
	acc := accounts.New(db, clock.Real{}, cfg.BcryptCost)
	var user models.User
	if err := db.Where("email = ?", accounts.NormalizeEmail(*email)).Take(&user).Error; err != nil {
		return fmt.Errorf("no user %s", *email)
	}
	ms, err := acc.Memberships(ctx, user.ID)
	if err != nil || len(ms) == 0 {
		return fmt.Errorf("%s belongs to no workspace", *email)
	}
	m := ms[0]
	if *workspace != 0 {
		if m, err = acc.Membership(ctx, user.ID, *workspace); err != nil {
			return fmt.Errorf("%s is not a member of workspace %d", *email, *workspace)
		}
	}
	actor := svc.UserActor(user, m.Role, "cli", "keysmith key create")
	created, err := svc.Create(ctx, m.WorkspaceID, actor, in)
	if err != nil {
		return err
	}
	if *rateLimit != 0 {
		if _, err := svc.SetRateLimit(ctx, m.WorkspaceID, actor, created.Key.ID, rateLimit); err != nil {
			return fmt.Errorf("key created, rate limit not set: %w", err)
		}
	}
	fmt.Fprintln(stdout, created.Secret)
	return nil
}
