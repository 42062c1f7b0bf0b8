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
	noop, auth float64 // req/s
	output     string
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
		}
	}
	if w.noop == 0 || w.auth == 0 {
		r.failed["wrk"] = "could not read bench/loadtest.sh's output"
		return
	}
	r.wrk = w
}
