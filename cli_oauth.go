package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"keysmith/accounts"
	"keysmith/app"
	"keysmith/clock"
	"keysmith/models"
	"keysmith/oauth"
	"keysmith/validate"
)

type oauthClientCreateCmd struct {
	Email       string   `required:"" placeholder:"EMAIL" help:"The owner or admin registering the app."`
	Name        string   `required:"" placeholder:"NAME" help:"App name, shown to people on the consent screen."`
	RedirectURI []string `required:"" name:"redirect-uri" sep:"none" placeholder:"URI" help:"Where people return after the consent screen, matched exactly; repeat the flag for several."`
	Scopes      string   `required:"" placeholder:"\"SCOPE ...\"" help:"The scopes the app may ask for, separated by spaces, such as \"files:read keys:read\"."`
	Public      bool     `help:"A public app (mobile, single-page, CLI): no client secret, PKCE alone."`
	LogoURL     string   `name:"logo-url" placeholder:"URL" help:"An https:// address of the app's logo."`
	Workspace   int64    `placeholder:"ID" help:"Workspace id (default: the user's personal workspace)."`
}

// registeredClient is what oauth-client create prints.
type registeredClient struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
}

// Run registers the app and prints its credentials as JSON on one line,
// so a script can capture them; the secret exists only in that line.
func (c *oauthClientCreateCmd) Run(s *streams) error {
	cfg, db, _, err := configuredDB("KEYSMITH_DATABASE_URL", "KEYSMITH_BASE_URL", "KEYSMITH_ENCRYPTION_KEY",
		"KEYSMITH_KEY_PREFIX", "KEYSMITH_SCOPES_FILE", "KEYSMITH_MAX_KEY_LIFETIME")
	if err != nil {
		return err
	}
	defer models.Close(db)
	keysService, err := app.NewKeys(cfg, db, clock.Real{})
	if err != nil {
		return invalidConfig(fmt.Errorf("KEYSMITH_SCOPES_FILE: %w", err))
	}
	// The OAuth service needs the encryption key (for its HMAC key), not
	// the signing keys: nothing is signed here.
	toks, err := app.NewTokens(cfg, db, clock.Real{})
	if err != nil {
		return err
	}
	svc, err := oauth.New(db, clock.Real{}, toks, keysService.Catalog(), oauth.Options{Issuer: cfg.BaseURL})
	if err != nil {
		return err
	}
	ctx := context.Background()
	member := keyCreateCmd{Email: c.Email, Workspace: c.Workspace}
	user, m, err := member.member(ctx, db, accounts.New(db, clock.Real{}, cfg.BcryptCost))
	if err != nil {
		return err
	}
	actor := keysService.UserActor(user, m.Role, "cli", "keysmith oauth-client create")
	reg, err := svc.Register(ctx, m.WorkspaceID, actor, oauth.AppInput{
		Name: c.Name, LogoURL: c.LogoURL, RedirectURIs: c.RedirectURI, Public: c.Public, Scopes: strings.Fields(c.Scopes),
	})
	var fields validate.Errors
	switch {
	case errors.Is(err, oauth.ErrForbidden):
		return fmt.Errorf("only owners and admins can register OAuth apps, and %s is %s of workspace %d", user.Email, m.Role, m.WorkspaceID)
	case errors.As(err, &fields):
		return appFlagErrors(fields)
	case err != nil:
		return err
	}
	out, err := json.Marshal(registeredClient{ClientID: reg.App.ClientID, ClientSecret: reg.Secret})
	if err != nil {
		return err
	}
	fmt.Fprintln(s.stdout, string(out))
	return nil
}

// appFlagErrors names the flags of oauth-client create in the domain's
// field errors, which report would otherwise name after the key form.
func appFlagErrors(fields validate.Errors) error {
	flags := map[string]string{"name": "--name", "logo_url": "--logo-url", "redirect_uris": "--redirect-uri", "scopes": "--scopes"}
	var lines []string
	for _, field := range slices.Sorted(maps.Keys(fields)) {
		flag, ok := flags[field]
		if !ok {
			flag = "--" + strings.ReplaceAll(field, "_", "-")
		}
		lines = append(lines, flag+": "+clause(fields[field]))
	}
	// report prefixes the first line with "keysmith: "; the others get it here.
	return errors.New(strings.Join(lines, "\nkeysmith: "))
}
