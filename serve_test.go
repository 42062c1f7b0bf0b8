package main

import (
	"bufio"
	"io"
	"keysmith/clock"
	"keysmith/models"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeFreshMachineAndSIGTERM runs the real binary the way the README
// does: a fresh directory, no configuration. It must create the database,
// print the URL and demo login, serve, and on SIGTERM drain, stop
// background work and close the database, in that order, exiting 0.
func TestServeFreshMachineAndSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "keysmith")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Dir = dir
	// A fresh machine: none of the test run's own KEYSMITH_* settings.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYSMITH_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "KEYSMITH_ADDR=127.0.0.1:0")
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	lines := bufio.NewScanner(stdout)
	var printed []string
	addr := ""
	for len(printed) < 3 && lines.Scan() {
		printed = append(printed, lines.Text())
		if m := regexp.MustCompile(`listening on (\S+)\)`).FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
	}
	all := strings.Join(printed, "\n")
	if addr == "" || !strings.Contains(all, "Demo login: demo@keysmith.localhost / keysmith-demo") || !strings.Contains(all, "/dev/mailbox") {
		t.Fatalf("start-up output:\n%s", all)
	}
	if _, err := os.Stat(filepath.Join(dir, "keysmith.db")); err != nil {
		t.Fatalf("no keysmith.db created: %v", err)
	}
	res, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("/readyz = %d", res.StatusCode)
	}

	// A key for the demo account, made by the CLI next to the running server,
	// used once: its last use sits in the server's buffer until shutdown.
	keyCmd := exec.Command(bin, "key", "create", "--email", "demo@keysmith.localhost", "--name", "sigterm", "--permission", "read")
	keyCmd.Dir, keyCmd.Env = dir, cmd.Env
	out, err := keyCmd.Output()
	if err != nil {
		t.Fatalf("key create: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/auth/test", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(out)))
	if res, err = http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("auth test with the CLI's key: %v %v", res.StatusCode, err)
	}
	res.Body.Close()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	logs, _ := io.ReadAll(stderr)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20s after SIGTERM\n%s", logs)
	}
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
		i := strings.Index(string(logs), step)
		if i < last || i < 0 {
			t.Fatalf("shutdown steps out of order or missing (%v):\n%s", order, logs)
		}
		last = i
	}
}
