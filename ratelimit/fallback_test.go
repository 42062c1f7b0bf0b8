package ratelimit_test

import (
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"keysmith/metrics"
	"keysmith/ratelimit"
	"keysmith/testutil"
)

func fallbackOn(t *testing.T, redisURL, prefix string) (*ratelimit.Fallback, *metrics.Metrics, *testutil.SyncBuffer) {
	t.Helper()
	shared, err := ratelimit.NewRedis(redisURL, prefix)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	m := metrics.New()
	f := ratelimit.NewFallback(shared, ratelimit.NewMemory(), slog.New(slog.NewTextHandler(logs, nil)), m)
	t.Cleanup(func() { f.Close() })
	return f, m, logs
}

func fallbacks(t *testing.T, m *metrics.Metrics) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "keysmith_redis_fallbacks_total" {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no keysmith_redis_fallbacks_total")
	return 0
}

func TestFallbackDecidesInMemoryWhileRedisIsDown(t *testing.T) {
	f, m, logs := fallbackOn(t, testutil.UnreachableRedisURL(t), ratelimit.DefaultPrefix)
	lim := ratelimit.Limits{PerMinute: 2}
	var got []bool
	for i := range 3 {
		// Each a RetryEvery apart, so each asks Redis again.
		d, err := f.Take(t.Context(), 1, lim, epoch.Add(time.Duration(i)*ratelimit.RetryEvery))
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		got = append(got, d.Allowed)
	}
	if got[0] != true || got[1] != true || got[2] != false {
		t.Fatalf("allowed %v; want the in-memory limit of 2", got)
	}
	if f.Healthy() || f.Err() == nil {
		t.Fatalf("healthy %v, err %v", f.Healthy(), f.Err())
	}
	if n := fallbacks(t, m); n != 3 {
		t.Errorf("keysmith_redis_fallbacks_total = %v, want 3", n)
	}
	if n := strings.Count(logs.String(), "Redis does not answer"); n != 1 {
		t.Errorf("the outage logged %d times, want once:\n%s", n, logs)
	}
	if err := f.Ping(t.Context()); err == nil {
		t.Error("Ping answered without Redis")
	}
}

// Redis going away and coming back, through a proxy that can be cut.
func TestFallbackSharesAgainWhenRedisIsBack(t *testing.T) {
	r := testutil.NewRedis(t)
	p := startProxy(t, r.URL)
	f, m, logs := fallbackOn(t, p.url, r.Prefix)
	lim := ratelimit.Limits{PerMinute: 100}
	now := epoch

	if d, err := f.Take(t.Context(), 1, lim, now); err != nil || !d.Allowed || !f.Healthy() {
		t.Fatalf("through Redis: %+v %v, healthy %v", d, err, f.Healthy())
	}
	if len(r.Keys(t)) != 1 || fallbacks(t, m) != 0 {
		t.Fatalf("Redis keys %v, fallbacks %v", r.Keys(t), fallbacks(t, m))
	}

	p.cut()
	for range 5 {
		if d, err := f.Take(t.Context(), 1, lim, now); err != nil || !d.Allowed {
			t.Fatalf("Redis down: %+v %v", d, err)
		}
	}
	if f.Healthy() || fallbacks(t, m) != 5 {
		t.Fatalf("Redis down: healthy %v, fallbacks %v", f.Healthy(), fallbacks(t, m))
	}

	p.restore()
	// Redis is asked again once RetryEvery has passed; the first call may
	// still meet a connection the cut closed.
	for i := 0; i < 10 && !f.Healthy(); i++ {
		now = now.Add(ratelimit.RetryEvery)
		if _, err := f.Take(t.Context(), 1, lim, now); err != nil {
			t.Fatal(err)
		}
	}
	if !f.Healthy() || f.Err() != nil {
		t.Fatalf("Redis back: healthy %v, err %v", f.Healthy(), f.Err())
	}
	before := fallbacks(t, m)
	d, err := f.Take(t.Context(), 1, lim, now)
	if err != nil || !d.Allowed || fallbacks(t, m) != before {
		t.Fatalf("after Redis came back: %+v %v, fallbacks %v then %v", d, err, before, fallbacks(t, m))
	}
	// The shared budget counts only what Redis saw: the first request,
	// this one, and whichever probes reached it — not the five in memory.
	if d.Remaining < 100-2-10 || d.Remaining > 100-2 {
		t.Errorf("remaining %d of the shared 100", d.Remaining)
	}
	out := logs.String()
	if strings.Count(out, "Redis does not answer") != 1 || strings.Count(out, "Redis is back") != 1 {
		t.Errorf("want the outage and the recovery logged once each:\n%s", out)
	}
}

// proxy forwards TCP to Redis until cut; restore listens again on the
// same address.
type proxy struct {
	t      *testing.T
	url    string
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

func startProxy(t *testing.T, redisURL string) *proxy {
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, target: u.Host, conns: map[net.Conn]bool{}}
	p.listen("127.0.0.1:0")
	p.addr = p.ln.Addr().String()
	u.Host = p.addr
	p.url = u.String()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *proxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

// cut closes the listener and every connection through it.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) restore() { p.listen(p.addr) }
