package views

import (
	"fmt"
	"strconv"
	"strings"
)

// Series is one stacked layer of a usage chart: an outcome of one key's
// requests, or one key's requests in a rotating pair.
type Series struct {
	Name   string
	Class  string  // colour: success, rate-limited, forbidden, other, old-key, new-key
	Values []int64 // one per bucket
}

// UsageTotal is one key's requests over the chart's period, by outcome.
type UsageTotal struct {
	Key         string // the key's name and hint, in a pair; "" alone
	Requests    int64
	Success     int64
	RateLimited int64
	Forbidden   int64
	Other       int64
}

// UsageView is a key page's usage card: the chart, its data and totals.
type UsageView struct {
	Title   string   // "Requests per hour, last 7 days"
	Unit    string   // "hour" or "day"
	Labels  []string // one per bucket: "2 Mar 09:00" or "2 Mar"
	Series  []Series
	Totals  []UsageTotal // one per key shown
	Daily   bool         // the 30-day view is shown
	HourURL string       // the 7-day view's page
	DayURL  string       // the 30-day view's page
	Pair    bool         // a rotating pair: one layer per key
}

// chart is a usage chart laid out in its SVG's coordinates: 0..chartW
// across, 0..chartH down, bars stacked from the bottom.
type chart struct {
	Bars  []chartBar
	Max   int64 // the top of the scale
	Grid  []float64
	BarW  float64
	Empty bool
}

type chartBar struct {
	X     float64
	Title string // the bucket, its total and its layers, for hover and screen readers
	Segs  []chartSeg
}

type chartSeg struct {
	Y, H  float64
	Class string
}

const (
	chartW = 720.0
	chartH = 160.0
)

// layout places the bars of v: one per bucket with requests, segments of
// each non-empty layer stacked in series order, the scale rounded up to a
// readable number. A period without requests has no bars.
func (v UsageView) layout() chart {
	n := len(v.Labels)
	c := chart{Empty: true}
	if n == 0 {
		return c
	}
	totals := make([]int64, n)
	for _, s := range v.Series {
		for i, x := range s.Values {
			totals[i] += x
		}
	}
	for _, t := range totals {
		c.Max = max(c.Max, t)
	}
	if c.Max == 0 {
		return c
	}
	c.Empty = false
	c.Max = niceCeil(c.Max)
	c.Grid = []float64{0, chartH / 2}
	slot := chartW / float64(n)
	c.BarW = max(slot*0.8, 1)
	for i, t := range totals {
		if t == 0 {
			continue
		}
		b := chartBar{X: float64(i)*slot + (slot-c.BarW)/2}
		parts := make([]string, 0, len(v.Series))
		y := chartH
		for _, s := range v.Series {
			x := s.Values[i]
			if x == 0 {
				continue
			}
			h := chartH * float64(x) / float64(c.Max)
			y -= h
			b.Segs = append(b.Segs, chartSeg{Y: y, H: h, Class: s.Class})
			parts = append(parts, Thousands(x)+" "+strings.ToLower(s.Name))
		}
		b.Title = fmt.Sprintf("%s: %s (%s)", v.Labels[i], plural64(t, "request"), strings.Join(parts, ", "))
		c.Bars = append(c.Bars, b)
	}
	return c
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten.
func niceCeil(n int64) int64 {
	p := int64(1)
	for {
		for _, m := range []int64{1, 2, 5} {
			if n <= m*p {
				return m * p
			}
		}
		p *= 10
	}
}

func plural64(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return Thousands(n) + " " + unit + "s"
}

// rows is the chart's data as the "Show data" table lists it: the buckets
// with requests, each layer's count.
func (v UsageView) rows() [][]string {
	var out [][]string
	for i, label := range v.Labels {
		row := []string{label}
		var total int64
		for _, s := range v.Series {
			row = append(row, Thousands(s.Values[i]))
			total += s.Values[i]
		}
		if total > 0 {
			out = append(out, append(row, Thousands(total)))
		}
	}
	return out
}

// axisLabels are the first, middle and last buckets' labels.
func (v UsageView) axisLabels() []string {
	n := len(v.Labels)
	if n == 0 {
		return nil
	}
	return []string{v.Labels[0], v.Labels[n/2], v.Labels[n-1]}
}

func coord(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// Sparkline is a list row's last 14 days: one bar per day, scaled to the
// busiest, drawn only where there were requests.
type Sparkline struct {
	Values []int64
	Total  int64
}

// NewSparkline sums the values for its label.
func NewSparkline(values []int64) Sparkline {
	s := Sparkline{Values: values}
	for _, v := range values {
		s.Total += v
	}
	return s
}

const (
	sparkBar = 4.0
	sparkH   = 16.0
)

type sparkBarXY struct{ X, Y, H float64 }

func (s Sparkline) bars() []sparkBarXY {
	var top int64
	for _, v := range s.Values {
		top = max(top, v)
	}
	var out []sparkBarXY
	for i, v := range s.Values {
		if v == 0 {
			continue
		}
		h := max(sparkH*float64(v)/float64(top), 1.5)
		out = append(out, sparkBarXY{X: float64(i) * sparkBar, Y: sparkH - h, H: h})
	}
	return out
}

func (s Sparkline) width() string { return coord(float64(len(s.Values)) * sparkBar) }

func (s Sparkline) label() string {
	return fmt.Sprintf("%s in the last %d days", plural64(s.Total, "request"), len(s.Values))
}
