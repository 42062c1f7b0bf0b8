package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"keysmith/clock"
	"keysmith/keys"
	"keysmith/models"
)

// Inactivity applies each workspace's inactivity policy (keys/inactivity.go)
// once per pass: it acts on the keys whose warning has run its course, then
// warns of the keys newly due. It only decides and records; what people
// and machines hear goes through the hooks, which enqueue it for the
// outbox to deliver. Each warning and each action is claimed by a
// conditional update first, so replicas running the same pass never warn
// or act twice, and a hook runs once per warning or action.
//
// The honest limit: a crash between the claim and its hook (the same
// instant) loses that one notice. The policy still waits the warning's 7
// days before acting, and the action is audited either way.
type Inactivity struct {
	keys  *keys.Service
	clock clock.Clock
	log   *slog.Logger

	Batch int // keys read at a time, and workspaces

	// OnInactivityWarning is told of each key warned of, and when the
	// policy will act on it if it stays unused. nil: nobody is told.
	OnInactivityWarning func(ctx context.Context, k models.APIKey, actAt time.Time)
	// OnInactivityAction is told of each key the policy disabled or
	// revoked (action is keys.InactivityDisable or keys.InactivityRevoke).
	// nil: nobody is told.
	OnInactivityAction func(ctx context.Context, k models.APIKey, action string)
}

// NewInactivity returns the inactivity policy job.
func NewInactivity(k *keys.Service, clk clock.Clock, log *slog.Logger) *Inactivity {
	return &Inactivity{keys: k, clock: clk, log: log, Batch: 200}
}

// Run is one pass over every workspace whose policy is on. A workspace
// that fails is logged and the others still run; the first error is
// returned.
func (j *Inactivity) Run(ctx context.Context) error {
	now := j.clock.Now()
	var first error
	for after := int64(0); ; {
		policies, err := j.keys.InactivityPolicies(ctx, after, j.Batch)
		if err != nil {
			return fmt.Errorf("inactivity policies: %w", err)
		}
		for _, p := range policies {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := j.workspace(ctx, p, now); err != nil {
				j.log.Error("inactivity policy failed", "workspace", p.WorkspaceID, "err", err)
				if first == nil {
					first = fmt.Errorf("inactivity policy of workspace %d: %w", p.WorkspaceID, err)
				}
			}
		}
		if len(policies) < j.Batch {
			return first
		}
		after = policies[len(policies)-1].WorkspaceID
	}
}

// workspace acts first, then warns: a key warned in this pass waits its
// notice whatever the order, and a key acted on is no longer warned of.
func (j *Inactivity) workspace(ctx context.Context, p keys.InactivityPolicy, now time.Time) error {
	err := j.each(ctx, p, now, j.keys.DueForAction, func(k models.APIKey) error {
		acted, err := j.keys.ApplyInactivity(ctx, p, k, now)
		if errors.Is(err, keys.ErrNoLongerInactive) {
			return nil
		}
		if err != nil {
			return err
		}
		j.log.Info("inactivity policy acted", "workspace", p.WorkspaceID, "key", k.ID, "action", p.Action, "idle_since", keys.IdleSince(k))
		if j.OnInactivityAction != nil {
			j.OnInactivityAction(ctx, acted, string(p.Action))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return j.each(ctx, p, now, j.keys.DueForWarning, func(k models.APIKey) error {
		marked, actAt, ok, err := j.keys.MarkWarned(ctx, p, k, now)
		if err != nil || !ok {
			return err
		}
		j.log.Info("inactivity policy warned", "workspace", p.WorkspaceID, "key", k.ID, "act_at", actAt)
		if j.OnInactivityWarning != nil {
			j.OnInactivityWarning(ctx, marked, actAt)
		}
		return nil
	})
}

type dueFunc func(ctx context.Context, p keys.InactivityPolicy, now time.Time, after keys.Cursor, limit int) ([]models.APIKey, *keys.Cursor, error)

// each calls fn for every key due, a batch at a time.
func (j *Inactivity) each(ctx context.Context, p keys.InactivityPolicy, now time.Time, due dueFunc, fn func(models.APIKey) error) error {
	for after := (keys.Cursor{}); ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		ks, next, err := due(ctx, p, now, after, j.Batch)
		if err != nil {
			return err
		}
		for _, k := range ks {
			if err := fn(k); err != nil {
				return err
			}
		}
		if next == nil {
			return nil
		}
		after = *next
	}
}
