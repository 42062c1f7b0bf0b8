// Package scheduler runs Keysmith's background work on an interval. Each job
// reads the time from its own injected clock, so tests call RunOnce and
// never sleep. What waits on real time is the interval of the loop in
// Start and, within a reminder pass, the renewal of leases and the drain at
// shutdown.
package scheduler

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Job is one piece of periodic work.
type Job struct {
	Name string
	Run  func(ctx context.Context) error
}

// Scheduler runs its jobs every interval until stopped.
type Scheduler struct {
	interval time.Duration
	jobs     []Job
	log      *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// New returns a scheduler; call Start to begin and Stop to end.
func New(interval time.Duration, log *slog.Logger, jobs ...Job) *Scheduler {
	return &Scheduler{interval: interval, jobs: jobs, log: log}
}

// RunOnce runs every job one time, in order. A failing job is logged and
// does not stop the others; the first error is returned.
func (s *Scheduler) RunOnce(ctx context.Context) error {
	var first error
	for _, j := range s.jobs {
		if err := j.Run(ctx); err != nil {
			s.log.Error("scheduled job failed", "job", j.Name, "err", err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// Start runs the jobs now and then every interval, in a goroutine.
func (s *Scheduler) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.interval)
		defer t.Stop()
		for {
			_ = s.RunOnce(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop cancels the running pass, if any, and waits for the loop to end. A
// job decides what cancelling means: the reminder pass claims nothing more
// and finishes the mails in flight, for at most its Drain.
func (s *Scheduler) Stop() {
	s.once.Do(func() {
		if s.cancel == nil {
			return
		}
		s.cancel()
		<-s.done
	})
}
