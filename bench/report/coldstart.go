package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// coldStartRounds is how many starts the median is taken over.
const coldStartRounds = 11

// coldStart is the time from exec to the first 200 from /healthz on the
// embedded default (SQLite that exists already, dev mailbox, demo account).
type coldStart struct {
	median, min, max float64 // ns
	rss              float64 // bytes, right after the first 200, median
	starts           []float64
}

// coldStart builds keysmith and starts it coldStartRounds times in an empty
// directory with no KEYSMITH_* variable but the address, after one start
// that creates, migrates and seeds the database. Each start is stopped
// before the next. /healthz is polled every millisecond; the polling is
// part of the figure, as curl's was in bench/coldstart.sh.
func (r *report) coldStart() {
	fmt.Fprintf(os.Stderr, "== coldstart: go build, then %d starts to the first 200 from /healthz\n", coldStartRounds)
	r.commands["coldstart"] = "go tool task bench -- -only coldstart"
	dir, err := os.MkdirTemp("", "keysmith-coldstart-")
	if err != nil {
		r.failed["coldstart"] = err.Error()
		return
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "keysmith")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		r.failed["coldstart"] = fmt.Sprintf("go build: %v\n%s", err, out)
		return
	}
	addr, err := freeAddr()
	if err != nil {
		r.failed["coldstart"] = err.Error()
		return
	}
	env := []string{"KEYSMITH_ADDR=" + addr}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYSMITH_") {
			env = append(env, kv)
		}
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := func() (took time.Duration, rss float64, err error) {
		cmd := exec.Command(bin)
		cmd.Dir, cmd.Env = dir, env
		began := time.Now()
		if err := cmd.Start(); err != nil {
			return 0, 0, err
		}
		defer func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}()
		for deadline := began.Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			res, err := client.Get("http://" + addr + "/healthz")
			if err != nil {
				continue
			}
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				took = time.Since(began)
				return took, residentBytes(cmd.Process.Pid), nil
			}
		}
		return 0, 0, errors.New("no 200 from /healthz within 10 s")
	}
	if _, _, err := start(); err != nil { // creates, migrates and seeds
		r.failed["coldstart"] = err.Error()
		return
	}
	c := &coldStart{}
	var rss []float64
	for range coldStartRounds {
		took, b, err := start()
		if err != nil {
			r.failed["coldstart"] = err.Error()
			return
		}
		c.starts = append(c.starts, float64(took))
		rss = append(rss, b)
	}
	sorted := slices.Sorted(slices.Values(c.starts))
	slices.Sort(rss)
	c.median, c.min, c.max = sorted[len(sorted)/2], sorted[0], sorted[len(sorted)-1]
	c.rss = rss[len(rss)/2]
	r.cold = c
	fmt.Fprintf(os.Stderr, "cold start to first 200: median %s (min %s, max %s, %d starts), RSS %s\n",
		duration(c.median), duration(c.min), duration(c.max), len(c.starts), bytesSize(c.rss))
}

// freeAddr is a loopback address nothing listens on.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// residentBytes is a process's resident set (Linux; 0 elsewhere).
func residentBytes(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024
		}
	}
	return 0
}
