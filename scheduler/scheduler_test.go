package scheduler_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"keysmith/scheduler"
)

func TestRunOnceRunsEveryJobDespiteFailures(t *testing.T) {
	var logs bytes.Buffer
	var order []string
	boom := errors.New("boom")
	s := scheduler.New(time.Hour, slog.New(slog.NewTextHandler(&logs, nil)),
		scheduler.Job{Name: "first", Run: func(context.Context) error { order = append(order, "first"); return boom }},
		scheduler.Job{Name: "second", Run: func(context.Context) error { order = append(order, "second"); return nil }},
	)
	if err := s.RunOnce(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("RunOnce = %v, want the first job's error", err)
	}
	if strings.Join(order, ",") != "first,second" {
		t.Fatalf("jobs ran as %v", order)
	}
	if !strings.Contains(logs.String(), "job=first") {
		t.Errorf("failure not logged: %s", logs.String())
	}
}

func TestStartRunsAtOnceAndStopWaitsForTheJob(t *testing.T) {
	var runs atomic.Int32
	started := make(chan struct{})
	var cancelled atomic.Bool
	s := scheduler.New(time.Hour, slog.New(slog.DiscardHandler), scheduler.Job{Name: "slow", Run: func(ctx context.Context) error {
		if runs.Add(1) == 1 {
			close(started)
		}
		<-ctx.Done() // a long pass: Stop must cancel it and wait
		cancelled.Store(true)
		return ctx.Err()
	}})
	s.Start()
	<-started
	s.Stop()
	if !cancelled.Load() {
		t.Fatal("Stop returned before the running job saw its cancellation")
	}
	s.Stop() // a second Stop is harmless
	if runs.Load() != 1 {
		t.Fatalf("job ran %d times", runs.Load())
	}
}
