// Command report runs every benchmark behind docs/BENCHMARKS.md at its full
// size, prints one table of each figure with its goal and whether the run
// met it, and with -write regenerates docs/BENCHMARKS.md from the same run
// (prose from bench/report/BENCHMARKS.md.tmpl, every number from the run).
//
//	go tool task bench          # print the table
//	go tool task bench:write    # and regenerate docs/BENCHMARKS.md
//	go run ./bench/report -small -only 'audit|keys'   # a quick look at a few
//
// The PostgreSQL parts run when KEYSMITH_TEST_POSTGRES_URL is set; the wrk
// load test when wrk is on PATH. Nothing here fails on a time: a goal not
// met is reported, and only a benchmark that fails makes the exit status 1.
package main

import (
	"bytes"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

//go:embed BENCHMARKS.md.tmpl
var docTemplate string

const postgresEnv = "KEYSMITH_TEST_POSTGRES_URL"

// A run is one `go test -bench` invocation.
type run struct {
	id        string // names the run in -only and in the template
	pkg       string
	bench     string // -bench regexp
	benchtime string // at the full sizes
	small     string // -benchtime at the small sizes
	count     int    // repeated runs; figures take the median
	sizedBy   string // the variable that sizes it, if any
}

// The sizes: KEYSMITH_BENCH_KEYS=small and a small audit log turn every
// benchmark into a quick one (CI runs them once that way).
var (
	fullSizes  = map[string]string{"KEYSMITH_BENCH_KEYS": "", "KEYSMITH_BENCH_AUDIT_EVENTS": "1000000"}
	smallSizes = map[string]string{"KEYSMITH_BENCH_KEYS": "small", "KEYSMITH_BENCH_AUDIT_EVENTS": "5000"}
)

const keysEnv, auditEnv = "KEYSMITH_BENCH_KEYS", "KEYSMITH_BENCH_AUDIT_EVENTS"

var runs = []run{
	{id: "keylist", pkg: "./handlers/", bench: "^BenchmarkKeyList$", benchtime: "200x", small: "20x", count: 1, sizedBy: keysEnv},
	{id: "audit", pkg: "./handlers/", bench: "^BenchmarkAuditLog$", benchtime: "200x", small: "20x", count: 1, sizedBy: auditEnv},
	{id: "export", pkg: "./handlers/", bench: "^BenchmarkAuditExport$", benchtime: "1x", small: "1x", count: 1, sizedBy: auditEnv},
	{id: "api", pkg: "./handlers/", bench: "^BenchmarkAPIRequest$", benchtime: "1s", small: "2000x", count: 5},
	{id: "keys", pkg: "./keys/", bench: "^Benchmark(Parse|ParseAndHash|Generate|SHA256|Hash|VerifyPath)$", benchtime: "1s", small: "2000x", count: 5},
	{id: "flush", pkg: "./keys/", bench: "^BenchmarkLastUsedFlush$", benchtime: "10x", small: "2x", count: 1, sizedBy: keysEnv},
	{id: "manykeys", pkg: "./handlers/", bench: "^BenchmarkManyKeys$", benchtime: "200000x", small: "2000x", count: 1, sizedBy: keysEnv},
	{id: "revocation", pkg: "./handlers/", bench: "^BenchmarkRevocationPropagation$", benchtime: "300x", small: "20x", count: 1},
	{id: "reminders", pkg: "./scheduler/", bench: "^BenchmarkReminderPass$", benchtime: "3x", small: "2x", count: 1, sizedBy: keysEnv},
}

func main() {
	write := flag.Bool("write", false, "regenerate docs/BENCHMARKS.md from this run")
	out := flag.String("out", "docs/BENCHMARKS.md", "the file -write regenerates")
	small := flag.Bool("small", false, "CI's small sizes and short runs: checks the report, not the figures")
	only := flag.String("only", "", "run only the parts whose id matches this regexp (keylist, audit, export, api, keys, flush, manykeys, revocation, reminders, coldstart, wrk)")
	flag.Parse()
	if *write && (*small || *only != "") {
		fatalf("-write regenerates the whole document: use it without -small and -only")
	}
	onlyRE, err := regexp.Compile(*only)
	if err != nil {
		fatalf("-only: %v", err)
	}
	r := &report{small: *small, results: map[string][]sample{}, commands: map[string]string{}, failed: map[string]string{}}
	began := time.Now()
	for _, ru := range runs {
		if onlyRE.MatchString(ru.id) {
			r.goTest(ru)
		}
	}
	if onlyRE.MatchString("coldstart") {
		r.coldStart()
	}
	if onlyRE.MatchString("wrk") {
		r.loadTest()
	}
	if onlyRE.MatchString("nginx") {
		r.proxyTest()
	}
	r.took = time.Since(began)

	figures := r.figures()
	fmt.Println()
	printTable(os.Stdout, figures)
	fmt.Printf("\n%s, in %s\n", r.sizes(), r.took.Round(time.Second))
	if *write {
		doc, err := r.document(figures)
		if err != nil {
			fatalf("render %s: %v", *out, err)
		}
		if err := os.WriteFile(*out, doc, 0o644); err != nil {
			fatalf("%v", err)
		}
		fmt.Printf("wrote %s\n", *out)
	}
	if len(r.failed) > 0 {
		for _, id := range slices.Sorted(maps.Keys(r.failed)) {
			fmt.Fprintf(os.Stderr, "%s failed: %s\n", id, r.failed[id])
		}
		os.Exit(1)
	}
}

// report holds one run's results.
type report struct {
	small     bool
	results   map[string][]sample // by benchmark name without the -GOMAXPROCS suffix
	order     []string            // benchmark names as they came
	runOf     map[string]string   // benchmark name → run id
	commands  map[string]string   // run id → the command, as a reader would type it
	failed    map[string]string   // run id → why
	cold      *coldStart
	wrk       *loadTest
	wrkNote   string
	proxy     *proxyTest
	proxyNote string
	took      time.Duration
}

// sample is one result line: iterations and value per unit (ns/op, B/op,
// p50-ms, statements/flush…).
type sample struct {
	iters  int
	values map[string]float64
	units  []string
}

func (r *report) sizes() string {
	if r.small {
		return "small sizes (" + keysEnv + "=small " + auditEnv + "=" + smallSizes[auditEnv] + ")"
	}
	return "full sizes"
}

// goTest runs one benchmark invocation, streaming its output to stderr,
// and keeps its result lines.
func (r *report) goTest(ru run) {
	benchtime, sizes, count := ru.benchtime, fullSizes, ru.count
	if r.small {
		benchtime, sizes, count = ru.small, smallSizes, 1
	}
	args := []string{"test", "-run", "^$", "-bench", ru.bench, "-benchmem", "-benchtime", benchtime, "-timeout", "60m"}
	if count > 1 {
		args = append(args, "-count", strconv.Itoa(count))
	}
	args = append(args, ru.pkg)
	shown := "go " + strings.Join(quoteArgs(args), " ")
	if v := sizes[ru.sizedBy]; v != "" {
		shown = ru.sizedBy + "=" + v + " " + shown
	}
	r.commands[ru.id] = shown
	fmt.Fprintf(os.Stderr, "== %s: %s\n", ru.id, shown)

	cmd := exec.Command("go", args...)
	cmd.Env = os.Environ()
	for k, v := range sizes {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(&buf, os.Stderr)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		r.failed[ru.id] = err.Error()
	}
	for line := range strings.Lines(buf.String()) {
		name, s, ok := parseLine(line)
		if !ok {
			continue
		}
		if _, seen := r.results[name]; !seen {
			r.order = append(r.order, name)
			if r.runOf == nil {
				r.runOf = map[string]string{}
			}
			r.runOf[name] = ru.id
		}
		r.results[name] = append(r.results[name], s)
	}
}

// parseLine reads a standard benchmark result line:
//
//	BenchmarkAuditLog/sqlite/first-2   200   1430511 ns/op   1.43 p50-ms   9876 B/op   120 allocs/op
func parseLine(line string) (string, sample, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
		return "", sample{}, false
	}
	iters, err := strconv.Atoi(f[1])
	if err != nil {
		return "", sample{}, false
	}
	s := sample{iters: iters, values: map[string]float64{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return "", sample{}, false
		}
		s.values[f[i+1]] = v
		s.units = append(s.units, f[i+1])
	}
	name := f[0]
	if procs := runtime.GOMAXPROCS(0); procs > 1 {
		name = strings.TrimSuffix(name, "-"+strconv.Itoa(procs))
	}
	return name, s, true
}

// value is the median over the runs of one benchmark's unit.
func (r *report) value(name, unit string) (float64, bool) {
	var vs []float64
	for _, s := range r.results[name] {
		if v, ok := s.values[unit]; ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	return vs[(len(vs)-1)/2], true
}

// p50 is a benchmark's median in nanoseconds: its p50-ms metric when it
// reports one, else its mean ns/op.
func (r *report) p50(name string) (float64, bool) {
	if v, ok := r.value(name, "p50-ms"); ok {
		return v * 1e6, true
	}
	return r.value(name, "ns/op")
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, "^$|()* ") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

func printTable(w io.Writer, figures []figure) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tMEASURED\tGOAL\tRESULT")
	for _, f := range figures {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.name, f.measured, f.goal, f.result)
	}
	tw.Flush()
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "report: "+format+"\n", args...)
	os.Exit(2)
}
