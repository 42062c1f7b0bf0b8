package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"keysmith/accounts"
	"keysmith/app"
	"keysmith/clock"
	"keysmith/config"
	"keysmith/keys"
	"keysmith/models"
	"keysmith/tokens"
)

// configuredDB loads the settings a command reads (refusing problems in
// those alone) and opens its database, migrated; the caller closes it.
func configuredDB(settings ...string) (config.Config, *gorm.DB, int, error) {
	cfg, err := loadConfig(settings...)
	if err != nil {
		return cfg, nil, 0, err
	}
	db, applied, err := app.OpenDB(cfg, clock.Real{})
	if err != nil {
		return cfg, nil, 0, fmt.Errorf("database: %w", err)
	}
	return cfg, db, applied, nil
}

type migrateCmd struct{}

// Run applies the migrations the database lacks.
func (migrateCmd) Run(s *streams) error {
	_, db, applied, err := configuredDB("KEYSMITH_DATABASE_URL")
	if err != nil {
		return err
	}
	defer models.Close(db)
	fmt.Fprintf(s.stdout, "database at schema version %d (%d migrations applied now)\n", models.SchemaVersion(), applied)
	return nil
}

type userCreateCmd struct {
	Email    string `required:"" placeholder:"EMAIL" help:"Email address, used to log in."`
	Password string `required:"" placeholder:"PASSWORD" help:"Password, or - to read it from standard input (keeps it out of the shell history and process list)."`
	Name     string `placeholder:"NAME" help:"Display name."`
}

// Run creates the user with a personal workspace, as signing up does.
func (c *userCreateCmd) Run(s *streams) error {
	password := c.Password
	if password == "-" {
		line, err := bufio.NewReader(s.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read the password from standard input: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
	}
	cfg, db, _, err := configuredDB("KEYSMITH_DATABASE_URL", "KEYSMITH_BCRYPT_COST")
	if err != nil {
		return err
	}
	defer models.Close(db)
	user, err := accounts.New(db, clock.Real{}, cfg.BcryptCost).SignUp(context.Background(), accounts.SignUpInput{
		Email: c.Email, Name: c.Name, Password: password,
	})
	if errors.Is(err, accounts.ErrEmailTaken) {
		return fmt.Errorf("%s is already registered", accounts.NormalizeEmail(c.Email))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "created user %s (id %d) with a personal workspace\n", user.Email, user.ID)
	if !cfg.PasswordLogin {
		fmt.Fprintf(s.stderr, "warning: KEYSMITH_PASSWORD_LOGIN is false: %s signs in with this password only at /login/password, "+
			"as break-glass access while the identity provider is down; everyone else signs in through the provider. Keep the password safe, or remove the user when done.\n", user.Email)
	}
	return nil
}

type signingKeyRotateCmd struct{}

// Run adds a signing key; running servers sign with it within a minute.
func (signingKeyRotateCmd) Run(s *streams) error {
	cfg, db, _, err := configuredDB("KEYSMITH_DATABASE_URL", "KEYSMITH_BASE_URL", "KEYSMITH_ENCRYPTION_KEY")
	if err != nil {
		return err
	}
	defer models.Close(db)
	ts, err := app.NewTokens(cfg, db, clock.Real{})
	if err != nil {
		return err
	}
	kid, err := ts.Rotate(context.Background())
	if err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "new signing key %s: running servers sign with it within %s; tokens signed before verify until they expire\n", kid, tokens.RefreshEvery)
	return nil
}

type keyCreateCmd struct {
	Email       string `required:"" placeholder:"EMAIL" help:"The user creating the key; it gets their access at most."`
	Name        string `required:"" placeholder:"NAME" help:"Key name, such as the service that will use it."`
	Permission  string `required:"" enum:"read,write,admin" placeholder:"read|write|admin" help:"What the key may do."`
	Env         string `enum:"live,test" default:"live" placeholder:"live|test" help:"Environment (default: ${default})."`
	Kind        string `enum:"sk,pk" default:"sk" placeholder:"sk|pk" help:"sk (secret) or pk (publishable, safe in browsers) (default: ${default})."`
	Expires     string `default:"never" placeholder:"WHEN" help:"never, days (30d), a duration of at least an hour (36h) or a date (2027-01-31) (default: ${default})."`
	Workspace   int64  `placeholder:"ID" help:"Workspace id (default: the user's personal workspace)."`
	RateLimit   *int   `placeholder:"N" help:"Requests per minute (default: the kind's); owners and admins only."`
	HourlyQuota *int   `placeholder:"N" help:"Requests per hour, at least the limit per minute (default: none); owners and admins only."`
	DailyQuota  *int   `placeholder:"N" help:"Requests per day, at least the hourly quota (default: none); owners and admins only."`
}

// Run creates the key and prints only its secret, so a script can capture it.
func (c *keyCreateCmd) Run(s *streams) error {
	in := keys.CreateInput{
		Name: c.Name, Kind: keys.Kind(c.Kind), Env: keys.Env(c.Env), Permission: keys.Permission(c.Permission),
	}
	var err error
	if in.ExpiresIn, in.ExpiresOn, err = expiry(c.Expires); err != nil {
		return err
	}
	if c.RateLimit != nil && (*c.RateLimit < 1 || *c.RateLimit > keys.MaxRateLimit) {
		return usagef("--rate-limit %d: choose 1 to %d requests per minute", *c.RateLimit, keys.MaxRateLimit)
	}
	limits := keys.LimitSettings{PerMinute: c.RateLimit, PerHour: c.HourlyQuota, PerDay: c.DailyQuota}
	setLimits := c.RateLimit != nil || c.HourlyQuota != nil || c.DailyQuota != nil
	// The domain's messages are written for the form; the quota ones read
	// well after the flag and its value.
	errs := keys.CheckLimits(in.Kind, limits)
	for _, q := range []struct {
		field, flag string
		n           *int
	}{{"hourly_quota", "--hourly-quota", c.HourlyQuota}, {"daily_quota", "--daily-quota", c.DailyQuota}} {
		if msg := errs[q.field]; msg != "" {
			return usagef("%s %d: %s", q.flag, *q.n, msg)
		}
	}
	cfg, db, _, err := configuredDB("KEYSMITH_DATABASE_URL", "KEYSMITH_KEY_PREFIX", "KEYSMITH_SCOPES_FILE", "KEYSMITH_MAX_KEY_LIFETIME")
	if err != nil {
		return err
	}
	defer models.Close(db)
	svc, err := app.NewKeys(cfg, db, clock.Real{})
	if err != nil {
		return invalidConfig(fmt.Errorf("KEYSMITH_SCOPES_FILE: %w", err))
	}
	ctx := context.Background()
	user, m, err := c.member(ctx, db, accounts.New(db, clock.Real{}, cfg.BcryptCost))
	if err != nil {
		return err
	}
	actor := svc.UserActor(user, m.Role, "cli", "keysmith key create")
	if setLimits && !actor.Admin {
		return fmt.Errorf("--rate-limit, --hourly-quota, --daily-quota: only owners and admins can set rate limits, and %s is %s of workspace %d", user.Email, m.Role, m.WorkspaceID)
	}
	created, err := svc.Create(ctx, m.WorkspaceID, actor, in)
	if err != nil {
		return err
	}
	if setLimits {
		if _, err := svc.SetRateLimits(ctx, m.WorkspaceID, actor, created.Key.ID, limits); err != nil {
			// The secret exists only now: print it rather than lose the key.
			fmt.Fprintln(s.stdout, created.Secret)
			return fmt.Errorf("key created, but its rate limit was not set: %w", err)
		}
	}
	fmt.Fprintln(s.stdout, created.Secret)
	return nil
}

// member finds the user and their membership of --workspace, or of their
// personal workspace (accounts lists it first).
func (c *keyCreateCmd) member(ctx context.Context, db *gorm.DB, acc *accounts.Service) (models.User, models.Membership, error) {
	var user models.User
	err := db.WithContext(ctx).Where("email = ?", accounts.NormalizeEmail(c.Email)).Take(&user).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return user, models.Membership{}, fmt.Errorf("no user %s", c.Email)
	}
	if err != nil {
		return user, models.Membership{}, err
	}
	if c.Workspace != 0 {
		m, err := acc.Membership(ctx, user.ID, c.Workspace)
		if errors.Is(err, accounts.ErrNotMember) {
			return user, m, fmt.Errorf("%s is not a member of workspace %d", user.Email, c.Workspace)
		}
		return user, m, err
	}
	ms, err := acc.Memberships(ctx, user.ID)
	if err != nil {
		return user, models.Membership{}, err
	}
	if len(ms) == 0 || !ms[0].Workspace.Personal {
		return user, models.Membership{}, fmt.Errorf("%s has no personal workspace; choose one with --workspace", user.Email)
	}
	return user, ms[0], nil
}

// expiry turns --expires into the keys service's ExpiresIn and ExpiresOn:
// never, a number of days (30d), a Go duration of at least an hour (36h)
// or a last day (2027-01-31).
func expiry(value string) (in, on string, err error) {
	if value == "never" {
		return "never", "", nil
	}
	if _, err := time.Parse(time.DateOnly, value); err == nil {
		return "custom", value, nil
	}
	if n, ok := strings.CutSuffix(value, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days > 0 {
			return strconv.Itoa(days), "", nil
		}
		return "", "", usagef("--expires %s: give a whole number of days, such as 30d", value)
	}
	d, err := time.ParseDuration(value)
	if err != nil {
		return "", "", usagef("--expires %s: give never, days (30d), a duration (36h) or a date (2027-01-31)", value)
	}
	if d < time.Hour {
		return "", "", usagef("--expires %s: a key must live at least 1 hour", value)
	}
	return value, "", nil
}
