package testutil

import (
	"context"
	"crypto/rand"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"keysmith/app"
	"keysmith/config"
)

// RedisEnv names the variable holding a Redis URL for tests.
const RedisEnv = "KEYSMITH_TEST_REDIS_URL"

// Redis is a namespace of one test's own on the test Redis: the keys its
// rate limiters write start with Prefix, so tests running at once, whose
// databases number their API keys alike, never share a budget.
type Redis struct {
	URL    string
	Prefix string
}

// NewRedis returns a fresh namespace on the Redis at
// KEYSMITH_TEST_REDIS_URL, whose keys are deleted when the test ends. The
// test is skipped, saying why, when the variable is not set.
func NewRedis(t testing.TB) Redis {
	t.Helper()
	url := os.Getenv(RedisEnv)
	if url == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set on CI: the Redis run must not be skipped", RedisEnv)
		}
		t.Skipf("%s is not set: skipping the Redis run (.ci/run sets it)", RedisEnv)
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("parse %s: %v", RedisEnv, err)
	}
	client := redis.NewClient(opt)
	if err := client.Ping(t.Context()).Err(); err != nil {
		client.Close()
		t.Fatalf("%s does not answer: %v", RedisEnv, err)
	}
	r := Redis{URL: url, Prefix: "keysmith:test:" + strings.ToLower(rand.Text()[:12]) + ":rl:"}
	t.Cleanup(func() {
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		keys, err := r.keys(ctx, client)
		if err == nil && len(keys) > 0 {
			err = client.Del(ctx, keys...).Err()
		}
		if err != nil {
			t.Errorf("delete the test's Redis keys: %v", err)
		}
	})
	return r
}

// Keys lists the keys written in the namespace so far.
func (r Redis) Keys(t testing.TB) []string {
	t.Helper()
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opt)
	defer client.Close()
	keys, err := r.keys(t.Context(), client)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// keys scans for the namespace's keys; redis_rate puts "rate:" before
// the prefix.
func (r Redis) keys(ctx context.Context, client *redis.Client) ([]string, error) {
	var keys []string
	it := client.Scan(ctx, 0, "*"+r.Prefix+"*", 1000).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	return keys, it.Err()
}

// WithRedis shares rate limits through the namespace r, as replicas share
// them through KEYSMITH_REDIS_URL.
func WithRedis(r Redis) Option {
	return func(c *config.Config, o *app.Options) { c.RedisURL, o.RedisPrefix = r.URL, r.Prefix }
}

// UnreachableRedisURL is a redis:// URL where nothing listens: a port
// that was just free.
func UnreachableRedisURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "redis://" + addr + "/0"
}
