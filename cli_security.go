package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"keysmith/accounts"
	"keysmith/app"
	"keysmith/clock"
	"keysmith/mailer"
	"keysmith/metrics"
	"keysmith/models"
	"keysmith/outbox"
	"keysmith/views"
	"keysmith/views/emails"
)

type userReset2FACmd struct {
	Email string `required:"" placeholder:"EMAIL" help:"The user who lost their authenticator app and recovery codes."`
}

// Run turns two-step verification off for a locked-out user: the app's
// secret, the recovery codes and the passkeys are deleted, every session ends, the
// workspaces' audit logs record it, and the user is mailed (through the
// outbox: a running server sends it on its next pass).
func (c *userReset2FACmd) Run(s *streams) error {
	cfg, db, _, err := configuredDB("KEYSMITH_DATABASE_URL", "KEYSMITH_BASE_URL", "KEYSMITH_ENCRYPTION_KEY", "KEYSMITH_MAIL_FROM")
	if err != nil {
		return err
	}
	defer models.Close(db)
	clk := clock.Real{}
	ts, err := app.NewTokens(cfg, db, clk)
	if err != nil {
		return err
	}
	ctx := context.Background()
	accts := accounts.New(db, clk, cfg.BcryptCost)
	user, err := accounts.NewTwoFactor(accts, ts).Reset(ctx, c.Email, accounts.Actor{Label: "operator (keysmith user reset-2fa)"})
	switch {
	case errors.Is(err, accounts.ErrNotFound):
		return fmt.Errorf("no user %s", accounts.NormalizeEmail(c.Email))
	case errors.Is(err, accounts.ErrTwoFactorOff):
		return fmt.Errorf("%s does not have two-step verification on", accounts.NormalizeEmail(c.Email))
	case err != nil:
		return err
	}
	if err := accounts.NewSessions(accts, cfg.SessionIdle, cfg.SessionLifetime).Unlist(ctx, user.ID, ""); err != nil {
		return err
	}
	m := mailer.New(nil, cfg.MailFrom, cfg.BaseURL)
	msg, err := m.Notice(ctx, user.Email, "Two-step verification was reset for your Keysmith account", emails.Notice{
		Name:     user.DisplayName(),
		Headline: "An operator of your Keysmith server turned two-step verification off for your account.",
		Facts:    []string{"When: " + views.Exact(clk.Now())},
		Body:     "Your authenticator app, recovery codes and passkeys no longer work, and every session was signed out. Sign in with your password and set up two-step verification again. If you did not ask for this, reset your password now and tell your operator.",
		Link:     m.URL("/settings/security"), LinkLabel: "Set up two-step verification",
	})
	if err != nil {
		return err
	}
	box := outbox.New(db, clk, ts, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.New())
	if err := box.EnqueueMail(ctx, db, outbox.Mail{Message: msg, UserID: user.ID}); err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "two-step verification is off for %s; every session ended, and the user is mailed\n", user.Email)
	return nil
}
