package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"keysmith/clock"
	"keysmith/models"
)

// server is the built binary serving in a directory of its own.
type server struct {
	cmd    *exec.Cmd
	stdout *bufio.Scanner
	stderr *bytes.Buffer // complete once stopped
}

// startServer runs keysmith with env as its only KEYSMITH_* settings.
func startServer(t *testing.T, dir string, env map[string]string) *server {
	t.Helper()
	cmd := exec.Command(keysmithBinary(t))
	cmd.Dir, cmd.Env = dir, freshEnv(env)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stdout: bufio.NewScanner(stdout), stderr: &bytes.Buffer{}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return s
}

// banner reads the start-up lines up to and including the one that
// starts with last.
func (s *server) banner(t *testing.T, last string) []string {
	t.Helper()
	var lines []string
	for s.stdout.Scan() {
		lines = append(lines, s.stdout.Text())
		if strings.HasPrefix(s.stdout.Text(), last) {
			return lines
		}
	}
	err := s.cmd.Wait()
	t.Fatalf("keysmith stopped (%v) before printing %q:\n%s\n%s", err, last, strings.Join(lines, "\n"), s.stderr)
	return nil
}

// stop sends SIGTERM and waits for the exit.
func (s *server) stop(t *testing.T) error {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20s after SIGTERM")
		return nil
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestServeFreshMachineAndSIGTERM runs the real binary the way the README
// does: a fresh directory, no configuration. It must create the database,
// print the URL and demo login, serve, and on SIGTERM drain, stop
// background work and close the database, in that order, exiting 0.
func TestServeFreshMachineAndSIGTERM(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"KEYSMITH_ADDR": "127.0.0.1:0"}
	srv := startServer(t, dir, env)

	printed := srv.banner(t, "No SMTP configured")
	all := strings.Join(printed, "\n")
	m := regexp.MustCompile(`^Keysmith is running at (http://127\.0\.0\.1:\d+)$`).FindStringSubmatch(printed[0])
	if m == nil || !strings.Contains(all, "Demo login: demo@keysmith.localhost / keysmith-demo") || !strings.Contains(all, m[1]+"/dev/mailbox") {
		t.Fatalf("start-up output:\n%s", all)
	}
	base := m[1]
	if _, err := os.Stat(filepath.Join(dir, "keysmith.db")); err != nil {
		t.Fatalf("no keysmith.db created: %v", err)
	}
	if status := getStatus(t, base+"/readyz"); status != 200 {
		t.Fatalf("/readyz = %d", status)
	}

	// A key for the demo account, made by the CLI next to the running server,
	// used once: its last use sits in the server's buffer until shutdown.
	code, out, stderr := runBinary(t, dir, env, "", "key", "create", "--email", "demo@keysmith.localhost", "--name", "sigterm", "--permission", "read")
	if code != 0 {
		t.Fatalf("key create: %d %s", code, stderr)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/auth/test", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(out))
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("auth test with the CLI's key: %v %v", res, err)
	}
	res.Body.Close()

	if err := srv.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, srv.stderr)
	}
	logs := srv.stderr.String()
	db, err := models.Open(filepath.Join(dir, "keysmith.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close(db)
	var k models.APIKey
	if err := db.Where("name = ?", "sigterm").Take(&k).Error; err != nil || k.LastUsedAt == nil {
		t.Fatalf("the last use was not written at shutdown: %v %+v", err, k.LastUsedAt)
	}
	order := []string{"draining requests", "stopping background work", "closing database"}
	last := -1
	for _, step := range order {
		i := strings.Index(logs, step)
		if i < last || i < 0 {
			t.Fatalf("shutdown steps out of order or missing (%v):\n%s", order, logs)
		}
		last = i
	}
}

// The banner once printed KEYSMITH_BASE_URL's default, localhost:8080,
// whatever KEYSMITH_ADDR said. It links the address actually listened on,
// and names the public URL only when the operator set one.
func TestServeBannerShowsTheAddressListenedOn(t *testing.T) {
	dir := t.TempDir()
	env := operatorEnv(dir, "KEYSMITH_DEV_MAILBOX", "true", "KEYSMITH_ADDR", ":0") // all interfaces, any port
	srv := startServer(t, dir, env)
	printed := srv.banner(t, "No SMTP configured")
	m := regexp.MustCompile(`^Keysmith is running at (http://localhost:(\d+))$`).FindStringSubmatch(printed[0])
	if m == nil || m[2] == "8080" || len(printed) != 2 || printed[1] != "No SMTP configured: emails appear at "+m[1]+"/dev/mailbox" {
		t.Fatalf("start-up output:\n%s", strings.Join(printed, "\n"))
	}
	if status := getStatus(t, m[1]+"/readyz"); status != 200 {
		t.Fatalf("the banner's URL answers /readyz with %d", status)
	}
	// Without KEYSMITH_BASE_URL, links in mail point where it listens too.
	if link := mailedResetLink(t, dir, env, m[1]); !strings.HasPrefix(link, m[1]+"/reset-password?token=") {
		t.Fatalf("the reset link %q does not point at %s", link, m[1])
	}
	if err := srv.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, srv.stderr)
	}

	env["KEYSMITH_ADDR"], env["KEYSMITH_BASE_URL"] = "127.0.0.1:0", "https://keys.example.com"
	srv = startServer(t, dir, env)
	printed = srv.banner(t, "No SMTP configured")
	if len(printed) != 3 ||
		!regexp.MustCompile(`^Keysmith is running at http://127\.0\.0\.1:\d+$`).MatchString(printed[0]) ||
		printed[1] != "Public URL (KEYSMITH_BASE_URL): https://keys.example.com" ||
		printed[2] != "No SMTP configured: emails appear at https://keys.example.com/dev/mailbox" {
		t.Fatalf("start-up output with KEYSMITH_BASE_URL:\n%s", strings.Join(printed, "\n"))
	}
	if err := srv.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, srv.stderr)
	}
}

// mailedResetLink asks for a password reset for a user it creates, and
// reads the link from the dev mailbox of the server at base.
func mailedResetLink(t *testing.T, dir string, env map[string]string, base string) string {
	t.Helper()
	runBinary(t, dir, env, "ada reset password\n", "user", "create", "--email", "ada@example.com", "--password", "-")
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	page := func(res *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	form := page(client.Get(base + "/forgot-password"))
	csrf := regexp.MustCompile(`name="_csrf" value="([^"]+)"`).FindStringSubmatch(form)
	if csrf == nil {
		t.Fatalf("no CSRF token on the form:\n%s", form)
	}
	page(client.PostForm(base+"/forgot-password", url.Values{"_csrf": {csrf[1]}, "email": {"ada@example.com"}}))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		box := page(client.Get(base + "/dev/mailbox"))
		if id := regexp.MustCompile(`href="/dev/mailbox/(\d+)"`).FindStringSubmatch(box); id != nil {
			mail := page(client.Get(base + "/dev/mailbox/" + id[1]))
			if link := regexp.MustCompile(`https?://[^\s"<]+/reset-password\?token=[A-Za-z0-9]+`).FindString(mail); link != "" {
				return link
			}
		}
	}
	t.Fatal("no reset mail in the dev mailbox")
	return ""
}
