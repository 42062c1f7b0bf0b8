package views

import "testing"

func TestChartLayout(t *testing.T) {
	for n, want := range map[int64]int64{1: 1, 2: 2, 3: 5, 7: 10, 10: 10, 11: 20, 48: 50, 1001: 2000} {
		if got := niceCeil(n); got != want {
			t.Errorf("niceCeil(%d) = %d, want %d", n, got, want)
		}
	}
	v := UsageView{Labels: []string{"a", "b", "c", "d"}, Series: []Series{
		{Name: "Success", Class: "success", Values: []int64{0, 3, 0, 10}},
		{Name: "Forbidden", Class: "forbidden", Values: []int64{0, 2, 0, 0}},
	}}
	c := v.layout()
	if c.Empty || c.Max != 10 || len(c.Bars) != 2 {
		t.Fatalf("layout: %+v", c)
	}
	b := c.Bars[0] // bucket b: 3 success under 2 forbidden, half the scale
	if len(b.Segs) != 2 || b.Segs[0].Class != "success" || b.Segs[0].H != chartH*0.3 || b.Segs[1].Y != chartH*0.5 {
		t.Fatalf("stacked bar: %+v", b)
	}
	if b.Title != "b: 5 requests (3 success, 2 forbidden)" {
		t.Fatalf("bar title %q", b.Title)
	}
	if top := c.Bars[1]; top.Segs[0].Y != 0 || top.Segs[0].H != chartH {
		t.Fatalf("the busiest bucket does not reach the top: %+v", top)
	}
	if rows := v.rows(); len(rows) != 2 || rows[0][0] != "b" || rows[0][3] != "5" {
		t.Fatalf("data rows: %v", rows)
	}
	empty := UsageView{Labels: []string{"a", "b"}, Series: []Series{{Name: "Success", Values: []int64{0, 0}}}}
	if c := empty.layout(); !c.Empty || len(c.Bars) != 0 {
		t.Fatalf("empty layout: %+v", c)
	}
	s := NewSparkline([]int64{0, 4, 0, 8})
	if bars := s.bars(); s.Total != 12 || len(bars) != 2 || bars[1].H != sparkH || bars[0].H != sparkH/2 || s.label() != "12 requests in the last 4 days" {
		t.Fatalf("sparkline: %+v %+v", s, bars)
	}
}
