package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

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
