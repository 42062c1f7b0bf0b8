package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
)

// loadTest is bench/loadtest.sh's result: medians of alternated wrk runs.
type loadTest struct {
	noop, auth, authz float64 // req/s
	output            string
}

var wrkLine = regexp.MustCompile(`(?m)^GET (\S+) .*?:\s+([\d.]+) req/s \(runs: (.*)\)$`)

// loadTest runs bench/loadtest.sh when wrk is installed: one server, wrk
// -t2 -c32 against /healthz and /v1/auth/test, alternated three times.
func (r *report) loadTest() {
	if _, err := exec.LookPath("wrk"); err != nil {
		r.wrkNote = "skipped (wrk not installed)"
		fmt.Fprintln(os.Stderr, "== wrk: skipped (wrk not installed)")
		return
	}
	duration, rounds := "10s", "3"
	if r.small {
		duration, rounds = "2s", "1"
	}
	r.commands["wrk"] = fmt.Sprintf("DURATION=%s ROUNDS=%s bash bench/loadtest.sh", duration, rounds)
	fmt.Fprintf(os.Stderr, "== wrk: %s\n", r.commands["wrk"])
	cmd := exec.Command("bash", "bench/loadtest.sh")
	cmd.Env = append(os.Environ(), "DURATION="+duration, "ROUNDS="+rounds)
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(&buf, os.Stderr)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		r.failed["wrk"] = err.Error()
		return
	}
	w := &loadTest{output: buf.String()}
	for _, m := range wrkLine.FindAllStringSubmatch(w.output, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[1] {
		case "/healthz":
			w.noop = v
		case "/v1/auth/test":
			w.auth = v
		case "/v1/authz":
			w.authz = v
		}
	}
	if w.noop == 0 || w.auth == 0 || w.authz == 0 {
		r.failed["wrk"] = "could not read bench/loadtest.sh's output"
		return
	}
	r.wrk = w
}

// proxyTest is bench/proxytest.sh's result: nginx with the shipped
// auth_request config against nginx straight to the same API.
type proxyTest struct {
	direct, authed float64 // req/s
	output         string
}

var proxyLine = regexp.MustCompile(`(?m)^nginx (straight to the API|with auth_request):\s+([\d.]+) req/s \(runs: (.*)\)$`)

// proxyTest runs bench/proxytest.sh when wrk and nginx are installed.
func (r *report) proxyTest() {
	for _, bin := range []string{"wrk", "nginx"} {
		if _, err := exec.LookPath(bin); err != nil {
			r.proxyNote = "skipped (" + bin + " not installed)"
			fmt.Fprintln(os.Stderr, "== nginx: "+r.proxyNote)
			return
		}
	}
	duration, rounds := "10s", "3"
	if r.small {
		duration, rounds = "2s", "1"
	}
	r.commands["nginx"] = fmt.Sprintf("DURATION=%s ROUNDS=%s bash bench/proxytest.sh", duration, rounds)
	fmt.Fprintf(os.Stderr, "== nginx: %s\n", r.commands["nginx"])
	cmd := exec.Command("bash", "bench/proxytest.sh")
	cmd.Env = append(os.Environ(), "DURATION="+duration, "ROUNDS="+rounds)
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(&buf, os.Stderr)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		r.failed["nginx"] = err.Error()
		return
	}
	p := &proxyTest{output: buf.String()}
	for _, m := range proxyLine.FindAllStringSubmatch(p.output, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		if m[1] == "with auth_request" {
			p.authed = v
		} else {
			p.direct = v
		}
	}
	if p.direct == 0 || p.authed == 0 {
		r.failed["nginx"] = "could not read bench/proxytest.sh's output"
		return
	}
	r.proxy = p
}
