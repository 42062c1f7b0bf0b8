// Package metrics is what Keysmith tells an operator's Prometheus: API
// outcomes, verification latency, the key cache, rate limiting, reminder
// deliveries, last-used flushes and Redis fallbacks. Every component takes
// a *Metrics; a nil one records nothing, so tests and the CLI need none.
package metrics

import (
	"context"
	"crypto/subtle"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds Keysmith's collectors in a registry of its own.
type Metrics struct {
	Registry *prometheus.Registry

	apiRequests    *prometheus.CounterVec
	apiOK          prometheus.Counter // apiRequests{code="ok"}, resolved once: the hot path
	verifySeconds  prometheus.Histogram
	cacheLookups   *prometheus.CounterVec
	cacheHit       prometheus.Counter
	cacheMiss      prometheus.Counter
	rateLimited    prometheus.Counter
	deliveries     *prometheus.CounterVec
	flushes        *prometheus.CounterVec
	flushedKeys    prometheus.Counter
	redisFallbacks prometheus.Counter
	revocations    *prometheus.CounterVec
	decisions      *prometheus.CounterVec
	allowed        prometheus.Counter // decisions{outcome="allowed"}, resolved once
}

// New registers every collector, with the Go runtime's and the process's.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{Registry: reg}
	m.apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keysmith_api_requests_total",
		Help: "API requests answered, by outcome code: ok, or the error code of SPEC §6 (invalid_api_key, rate_limit_exceeded, …).",
	}, []string{"code"})
	m.verifySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keysmith_key_verification_seconds",
		Help:    "Time to authenticate a presented key: parse, hash, cache or database, and rate limit.",
		Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
	})
	m.cacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keysmith_key_cache_lookups_total",
		Help: "Key cache lookups by result: hit, or miss (a database read).",
	}, []string{"result"})
	m.rateLimited = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keysmith_rate_limited_requests_total",
		Help: "Requests refused because their key was over a rate limit or quota.",
	})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keysmith_reminder_deliveries_total",
		Help: "Reminder delivery attempts by result: sent, retry (refused, will be tried again) or failed (given up).",
	}, []string{"status"})
	m.flushes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keysmith_last_used_flushes_total",
		Help: "Writes of buffered last-used times to the database, by result: ok or error.",
	}, []string{"result"})
	m.flushedKeys = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keysmith_last_used_flushed_keys_total",
		Help: "Keys whose last-used time was written by a flush.",
	})
	m.redisFallbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keysmith_redis_fallbacks_total",
		Help: "Rate-limit decisions taken by the in-process limiter because Redis did not answer.",
	})
	m.revocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keysmith_key_change_notifications_total",
		Help: "Key changes heard from other replicas (PostgreSQL LISTEN/NOTIFY), and listener reconnects, by event.",
	}, []string{"event"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keysmith_authz_decisions_total",
		Help: "Forward-authentication decisions (/v1/authz) for a reverse proxy, by outcome: allowed, public (a route that needs no key), or the error code of SPEC §6 that refused the request.",
	}, []string{"outcome"})
	m.allowed = m.decisions.WithLabelValues("allowed")
	m.apiOK = m.apiRequests.WithLabelValues("ok")
	m.cacheHit, m.cacheMiss = m.cacheLookups.WithLabelValues("hit"), m.cacheLookups.WithLabelValues("miss")
	for _, c := range []prometheus.Collector{m.apiRequests, m.verifySeconds, m.cacheLookups, m.rateLimited, m.deliveries, m.flushes, m.flushedKeys, m.redisFallbacks, m.revocations, m.decisions} {
		f(c)
	}
	return m
}

// APIRequest counts one API answer by its outcome code ("ok" when served).
func (m *Metrics) APIRequest(code string) {
	switch {
	case m == nil:
	case code == "ok":
		m.apiOK.Inc()
	default:
		m.apiRequests.WithLabelValues(code).Inc()
	}
}

// Decision counts one forward-authentication decision by its outcome:
// "allowed", "public", or the refusal's error code.
func (m *Metrics) Decision(outcome string) {
	switch {
	case m == nil:
	case outcome == "allowed":
		m.allowed.Inc()
	default:
		m.decisions.WithLabelValues(outcome).Inc()
	}
}

// Verification records how long authenticating one key took.
func (m *Metrics) Verification(d time.Duration) {
	if m != nil {
		m.verifySeconds.Observe(d.Seconds())
	}
}

// CacheLookup counts a key cache hit or miss.
func (m *Metrics) CacheLookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.cacheHit.Inc()
	} else {
		m.cacheMiss.Inc()
	}
}

// RateLimited counts one request refused for its key's limit.
func (m *Metrics) RateLimited() {
	if m != nil {
		m.rateLimited.Inc()
	}
}

// Delivery counts one reminder delivery attempt: "sent", "retry" or "failed".
func (m *Metrics) Delivery(status string) {
	if m != nil {
		m.deliveries.WithLabelValues(status).Inc()
	}
}

// Flush counts one last-used flush and the keys it wrote.
func (m *Metrics) Flush(keys int, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.flushes.WithLabelValues("error").Inc()
		return
	}
	m.flushes.WithLabelValues("ok").Inc()
	m.flushedKeys.Add(float64(keys))
}

// RedisFallback counts one decision the local limiter took for Redis.
func (m *Metrics) RedisFallback() {
	if m != nil {
		m.redisFallbacks.Inc()
	}
}

// KeyChange counts a LISTEN/NOTIFY event: "notified" or "reconnected".
func (m *Metrics) KeyChange(event string) {
	if m != nil {
		m.revocations.WithLabelValues(event).Inc()
	}
}

// PendingDeliveries reports the reminder queue's depth at each scrape,
// asking count (with a short deadline) rather than keeping a gauge that
// replicas would each hold a part of.
func (m *Metrics) PendingDeliveries(count func(context.Context) (int64, error)) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keysmith_reminder_deliveries_pending",
		Help: "Reminder deliveries waiting to be sent (all replicas; -1 when the database did not answer).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := count(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	}))
}

// Handler serves the registry in Prometheus text format to requests that
// carry "Authorization: Bearer <token>"; others get 401.
func (m *Metrics) Handler(token string) http.Handler {
	serve := promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="keysmith-metrics"`)
			http.Error(w, "metrics need Authorization: Bearer <KEYSMITH_METRICS_TOKEN>", http.StatusUnauthorized)
			return
		}
		serve.ServeHTTP(w, r)
	})
}
