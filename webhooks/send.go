package webhooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gorm.io/gorm"

	"keysmith/keys"
	"keysmith/models"
	"keysmith/outbox"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// Sign is the Standard Webhooks signature of one call: "v1," and the
// base64 HMAC-SHA256, keyed with the secret's bytes (the base64 after
// "whsec_"), of "id.timestamp.body".
func Sign(secret, id string, timestamp int64, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return "", fmt.Errorf("webhooks: a secret that is not whsec_ and base64: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%d.", id, timestamp)
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

type httpDoer interface {
	Do(*http.Request) (*http.Response, error)
}

// errRefusedAddress: the SSRF guard refused where a call would connect.
var errRefusedAddress = errors.New("webhooks: the endpoint resolves to a private, loopback or link-local address")

// refused says whether the guard refuses an address.
func refused(ip net.IP) bool {
	if ip4 := ip.To4(); ip4 != nil && (ip4[0] == 0 || ip4[0] == 100 && ip4[1]&0xc0 == 64) { // 0.0.0.0/8, 100.64.0.0/10
		return true
	}
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified()
}

// newClient makes the calls: no proxy from the environment, no redirects
// followed, and, unless private targets are allowed, a check of every
// address it connects to (after DNS, so a name cannot smuggle one in).
func newClient(opts Options) *http.Client {
	dialer := &net.Dialer{Timeout: opts.Timeout}
	if !opts.AllowPrivate {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || refused(ip) {
				return errRefusedAddress
			}
			return nil
		}
	}
	return &http.Client{
		Timeout: opts.Timeout,
		Transport: &http.Transport{
			Proxy: nil, DialContext: dialer.DialContext, ForceAttemptHTTP2: true,
			MaxIdleConns: 20, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: opts.Timeout,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Compose turns claimed calls into sends (the outbox's Composer): each is
// signed with its endpoint's current secret when it goes out. Calls to an
// endpoint deleted or switched off meanwhile are cancelled.
func (s *Service) Compose(_ context.Context, db *gorm.DB, ds []models.Delivery, _ time.Time) ([]outbox.Ready, []int64, error) {
	ids := make([]int64, 0, len(ds))
	for _, d := range ds {
		if d.EndpointID != nil {
			ids = append(ids, *d.EndpointID)
		}
	}
	var es []models.WebhookEndpoint
	if err := db.Where("id IN ?", ids).Find(&es).Error; err != nil {
		return nil, nil, err
	}
	byID := map[int64]models.WebhookEndpoint{}
	for _, e := range es {
		byID[e.ID] = e
	}
	var ready []outbox.Ready
	var cancelled []int64
	for _, d := range ds {
		e, ok := byID[ptr(d.EndpointID)]
		var c call
		if !ok || !e.Enabled && d.Subject != TestEvent {
			cancelled = append(cancelled, d.ID)
			continue
		}
		if err := s.outbox.Open(d, &c); err != nil {
			return nil, nil, err
		}
		secret, err := s.sealer.Open(sealPurpose, e.SecretEnc)
		if err != nil {
			return nil, nil, err
		}
		ready = append(ready, outbox.Ready{Delivery: d, Send: func(ctx context.Context) (int, error) {
			code, err := s.post(ctx, e.URL, string(secret), c)
			s.after(e, err)
			return code, err
		}})
	}
	return ready, cancelled, nil
}

func ptr(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// post makes one signed call; any answer but 2xx is a failure to retry.
func (s *Service) post(ctx context.Context, url, secret string, c call) (int, error) {
	ts := s.clock.Now().Unix()
	sig, err := Sign(secret, c.ID, ts, c.Body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(c.Body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Keysmith-Webhooks/1")
	req.Header.Set("webhook-id", c.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", sig)
	res, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return res.StatusCode, fmt.Errorf("the endpoint answered HTTP %d", res.StatusCode)
	}
	return res.StatusCode, nil
}

// after keeps an endpoint's health: a success ends its failing spell; a
// failure starts one, and a spell of FailingFor switches the endpoint off
// and mails the workspace's owners and admins.
func (s *Service) after(e models.WebhookEndpoint, callErr error) {
	ctx := context.Background()
	now := s.clock.Now().UTC()
	db := s.db.WithContext(ctx)
	// A model of its own: e shares FailingSince with the other calls of this
	// send, and gorm writes an update's values through the model's pointers.
	row := &models.WebhookEndpoint{ID: e.ID}
	if callErr == nil {
		if err := db.Model(row).Updates(map[string]any{"failing_since": nil, "last_delivery_at": now}).Error; err != nil {
			s.log.Warn("webhooks: endpoint health not recorded", "endpoint_id", e.ID, "err", err)
		}
		return
	}
	err := db.Model(row).Where("failing_since IS NULL").Update("failing_since", now).Error
	if err == nil {
		var fresh models.WebhookEndpoint // read into a new value, for the same reason
		if err = db.Where("id = ?", e.ID).Take(&fresh).Error; err == nil {
			e = fresh
		}
	}
	if err != nil || e.FailingSince == nil || !e.Enabled || now.Sub(*e.FailingSince) < FailingFor {
		return
	}
	reason := "Every call failed for " + strconv.Itoa(int(FailingFor.Hours()/24)) + " days; the last: " + callErr.Error()
	var admins []models.User
	err = db.Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&models.WebhookEndpoint{}).Where("id = ? AND enabled", e.ID).
			Updates(map[string]any{"enabled": false, "disabled_reason": reason, "updated_at": now})
		if res.Error != nil || res.RowsAffected == 0 {
			return res.Error
		}
		if err := tx.Create(s.event(e.WorkspaceID, systemActor(), ActionAutoDisabled, e, reason)).Error; err != nil {
			return err
		}
		if err := tx.Joins("JOIN memberships m ON m.user_id = users.id").
			Where("m.workspace_id = ? AND m.role IN ?", e.WorkspaceID, []string{string(models.RoleOwner), string(models.RoleAdmin)}).
			Find(&admins).Error; err != nil {
			return err
		}
		var mails []outbox.Mail
		for _, a := range admins {
			msg, err := s.mail.WebhookDisabled(ctx, a.Email, a.DisplayName(), e.URL, reason, s.opts.BaseURL+"/settings/webhooks/"+itoa(e.ID))
			if err != nil {
				return err
			}
			mails = append(mails, outbox.Mail{Message: msg, WorkspaceID: e.WorkspaceID, UserID: a.ID})
		}
		return s.outbox.EnqueueMail(ctx, tx, mails...)
	})
	if err != nil {
		s.log.Error("webhooks: a failing endpoint was not switched off", "endpoint_id", e.ID, "err", err)
	}
}

// systemActor is Keysmith itself, in the audit log.
func systemActor() keys.Actor { return keys.Actor{Label: "Keysmith (endpoint failing)"} }
