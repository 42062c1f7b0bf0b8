package ratelimit

import (
	"context"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// DefaultPrefix starts the name of every window Redis keeps, as
// keysmith:rl:{42}:m:1000 (redis_rate puts "rate:" before it). The braces
// are a Redis Cluster hash tag: a key's windows live on one node.
const DefaultPrefix = "keysmith:rl:"

// Redis keeps every key's windows in Redis, so every replica spends from
// one budget. Each window is one call of redis_rate's GCRA script, timed by
// Redis's clock (Take's now is not used).
//
// Windows are spent shortest first. When one refuses, the windows already
// spent are given their request back (AllowN with -1), so a refused
// request spends nothing, with one exception: the script does not store a
// window that the refund makes full again, so a window that was full
// before the refused request stays one request short for at most one
// interval (its period divided by its limit). The windows are separate
// keys: a replica may see another's request spent in one window and not
// yet in the next, which can only refuse more, never admit more.
type Redis struct {
	client *redis.Client
	rate   *redis_rate.Limiter
	prefix string
}

// NewRedis returns a limiter on the Redis at url (redis://host:6379/0),
// whose keys start with prefix (DefaultPrefix, or a test's own). It
// connects on first use. Calls honour their context's deadline and are
// never retried: a retried spend could count twice.
func NewRedis(url, prefix string) (*Redis, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	client := redis.NewClient(opt)
	return &Redis{client: client, rate: redis_rate.NewLimiter(client), prefix: prefix}, nil
}

// Take spends one request of each of the key's windows if every one has
// it.
func (r *Redis) Take(ctx context.Context, keyID int64, l Limits, _ time.Time) (Decision, error) {
	var st [len(windows)]standing
	var spent [len(windows)]string
	n := 0
	for _, w := range windows {
		limit := l.Of(w)
		if limit <= 0 {
			continue
		}
		key := r.key(keyID, w, limit)
		res, err := r.rate.AllowN(ctx, key, rate(w, limit), 1)
		if err != nil {
			r.refund(ctx, l, st[:n], spent[:n])
			return Decision{}, err
		}
		s := standing{window: w, limit: limit, allowed: res.Allowed > 0, remaining: res.Remaining, reset: res.ResetAfter}
		if !s.allowed {
			s.retryAfter = res.RetryAfter
			r.refund(ctx, l, st[:n], spent[:n])
			return tightest([]standing{s}), nil
		}
		st[n], spent[n] = s, key
		n++
	}
	return tightest(st[:n]), nil
}

// refund gives back the request spent in these windows. It is best effort:
// if Redis fails here the request stays spent, as a request lost in
// flight would be.
func (r *Redis) refund(ctx context.Context, l Limits, st []standing, keys []string) {
	for i, s := range st {
		_, _ = r.rate.AllowN(ctx, keys[i], rate(s.window, l.Of(s.window)), -1)
	}
}

// key names one window of one key at one limit: a changed limit starts a
// fresh window, as in Memory, and the old one expires by itself.
func (r *Redis) key(keyID int64, w Window, limit int) string {
	var buf [64]byte
	b := append(buf[:0], r.prefix...)
	b = append(b, '{')
	b = strconv.AppendInt(b, keyID, 10)
	b = append(b, "}:"...)
	b = append(b, w.String()[0], ':')
	b = strconv.AppendInt(b, int64(limit), 10)
	return string(b)
}

func rate(w Window, limit int) redis_rate.Limit {
	return redis_rate.Limit{Rate: limit, Burst: limit, Period: w.Period()}
}

// Ping asks Redis whether it answers.
func (r *Redis) Ping(ctx context.Context) error { return r.client.Ping(ctx).Err() }

// Close closes the connections to Redis.
func (r *Redis) Close() error { return r.client.Close() }
