package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"text/template"
	"time"
)

// document renders docs/BENCHMARKS.md: the template's prose around this
// run's tables.
func (r *report) document(figures []figure) ([]byte, error) {
	t, err := template.New("BENCHMARKS.md").Funcs(template.FuncMap{
		"machine": r.machine,
		"summary": func() string { return markdownSummary(figures) },
		"command": func(id string) string {
			if c := r.commands[id]; c != "" {
				return "```\n" + c + "\n```"
			}
			return "(not run)"
		},
		"results":   r.markdownResults,
		"coldstart": r.markdownColdStart,
		"wrk":       r.markdownLoadTest,
		"nginx":     r.markdownProxyTest,
	}).Parse(docTemplate)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, nil); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// machine says where and when the figures were measured.
func (r *report) machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	commit := "unknown commit"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	pg := "PostgreSQL not configured"
	if os.Getenv(postgresEnv) != "" {
		pg = "PostgreSQL on loopback"
	}
	return fmt.Sprintf("%s, %d cores (%s), %s %s/%s, SQLite in a temp dir, %s; commit %s plus the working tree; %s; the run took %s.",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), cpu, runtime.Version(), runtime.GOOS, runtime.GOARCH,
		pg, commit, r.sizes(), r.took.Round(time.Second))
}

func markdownSummary(figures []figure) string {
	var b strings.Builder
	b.WriteString("| figure | measured | goal | result |\n|---|---|---|---|\n")
	for _, f := range figures {
		result := f.result
		if strings.HasPrefix(result, "met") {
			result = "**" + result + "**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", f.name, f.measured, f.goal, result)
	}
	return b.String()
}

// markdownResults is one run's raw results: each benchmark with every
// unit it reported (medians when it ran more than once).
func (r *report) markdownResults(id string) string {
	var names, units []string
	seen := map[string]bool{}
	runs := 0
	for _, name := range r.order {
		if r.runOf[name] != id {
			continue
		}
		names = append(names, name)
		runs = max(runs, len(r.results[name]))
		for _, s := range r.results[name] {
			for _, u := range s.units {
				if !seen[u] {
					seen[u] = true
					units = append(units, u)
				}
			}
		}
	}
	if len(names) == 0 {
		if r.failed[id] != "" {
			return "(the run failed: " + r.failed[id] + ")"
		}
		return "(no results)"
	}
	var b strings.Builder
	if runs > 1 {
		fmt.Fprintf(&b, "Medians of %d runs.\n\n", runs)
	}
	b.WriteString("| benchmark | iterations |")
	for _, u := range units {
		b.WriteString(" " + u + " |")
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(units)) + "\n")
	for _, name := range names {
		fmt.Fprintf(&b, "| `%s` | %d |", strings.TrimPrefix(name, "Benchmark"), r.results[name][0].iters)
		for _, u := range units {
			v, ok := r.value(name, u)
			switch {
			case !ok:
				b.WriteString(" |")
			case v >= 1000:
				fmt.Fprintf(&b, " %s |", count(int(v+0.5)))
			default:
				fmt.Fprintf(&b, " %.4g |", v)
			}
		}
		b.WriteString("\n")
	}
	if r.failed[id] != "" {
		b.WriteString("\nThe run failed (" + r.failed[id] + "); the rows above are what it printed before.\n")
	}
	return b.String()
}

func (r *report) markdownColdStart() string {
	if r.cold == nil {
		return "(not measured in this run)"
	}
	c := r.cold
	starts := make([]string, len(c.starts))
	for i, s := range c.starts {
		starts[i] = fmt.Sprintf("%.0f", s/1e6)
	}
	return fmt.Sprintf("| median | min | max | idle RSS | starts (ms, in order) |\n|---|---|---|---|---|\n| **%s** | %s | %s | %s | %s |\n",
		duration(c.median), duration(c.min), duration(c.max), bytesSize(c.rss), strings.Join(starts, " · "))
}

func (r *report) markdownLoadTest() string {
	if r.wrk == nil {
		if r.wrkNote != "" {
			return "(" + r.wrkNote + ")"
		}
		return "(not measured in this run)"
	}
	var b strings.Builder
	b.WriteString("| endpoint | req/s (median) | runs |\n|---|---|---|\n")
	runs := map[string]string{}
	for _, m := range wrkLine.FindAllStringSubmatch(r.wrk.output, -1) {
		runs[m[1]] = strings.ReplaceAll(strings.TrimSpace(m[3]), " ", " · ")
	}
	fmt.Fprintf(&b, "| `GET /healthz` (no key) | %s | %s |\n", count(int(r.wrk.noop)), runs["/healthz"])
	fmt.Fprintf(&b, "| `GET /v1/auth/test` (Bearer key) | %s | %s |\n", count(int(r.wrk.auth)), runs["/v1/auth/test"])
	fmt.Fprintf(&b, "| `GET /v1/authz` (a proxy asking about `GET /files/42`) | %s | %s |\n", count(int(r.wrk.authz)), runs["/v1/authz"])
	fmt.Fprintf(&b, "| ratio, authenticated | **%.2f** | |\n", r.wrk.auth/r.wrk.noop)
	fmt.Fprintf(&b, "| ratio, forward-auth decision | **%.2f** | |\n", r.wrk.authz/r.wrk.noop)
	return b.String()
}

func (r *report) markdownProxyTest() string {
	if r.proxy == nil {
		if r.proxyNote != "" {
			return "(" + r.proxyNote + ")"
		}
		return "(not measured in this run)"
	}
	var b strings.Builder
	b.WriteString("| nginx | req/s (median) | runs |\n|---|---|---|\n")
	runs := map[string]string{}
	for _, m := range proxyLine.FindAllStringSubmatch(r.proxy.output, -1) {
		runs[m[1]] = strings.ReplaceAll(strings.TrimSpace(m[3]), " ", " · ")
	}
	fmt.Fprintf(&b, "| straight to the API | %s | %s |\n", count(int(r.proxy.direct)), runs["straight to the API"])
	fmt.Fprintf(&b, "| with auth_request (`deploy/nginx/nginx.conf`) | %s | %s |\n", count(int(r.proxy.authed)), runs["with auth_request"])
	fmt.Fprintf(&b, "| ratio | **%.2f** | |\n", r.proxy.authed/r.proxy.direct)
	return b.String()
}
