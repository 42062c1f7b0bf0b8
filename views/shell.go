// Package views holds the dashboard's templ components. They take plain view
// models (the structs below and beside each page), never gorm models.
package views

import "context"

// Shell is what the layout needs around every page.
type Shell struct {
	Title      string
	Flash      Flash
	User       *UserInfo // nil when logged out
	Workspaces []WorkspaceOption
	Current    WorkspaceOption
	Nav        string // which navigation entry is current
	DevMailbox bool   // link the dev mailbox in the footer
	// Notice is a standing message on every page until its cause is gone:
	// two-step verification the workspace requires.
	Notice Flash
}

// Flash is a one-time message shown at the top of the next page.
type Flash struct {
	Kind     string // success, error or info
	Message  string
	Href     string // an optional link to act on the message
	LinkText string
}

// UserInfo is the logged-in user as the layout shows them.
type UserInfo struct {
	Name  string
	Email string
}

// WorkspaceOption is one entry of the workspace switcher.
type WorkspaceOption struct {
	ID   int64
	Name string
	Role string
}

type ctxKey int

const csrfKey ctxKey = iota

// WithCSRF stores the request's CSRF token where every form component finds it.
func WithCSRF(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, csrfKey, token)
}

func csrfToken(ctx context.Context) string {
	s, _ := ctx.Value(csrfKey).(string)
	return s
}

// FieldErrors maps a form field name to its message.
type FieldErrors map[string]string
