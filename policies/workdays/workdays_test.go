package workdays_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/certless/certless/policies/workdays"
)

func day(s string) time.Time {
	d, err := time.ParseInLocation(time.DateOnly, s, workdays.Beijing)
	if err != nil {
		panic(err)
	}
	return d.Add(10 * time.Hour)
}

func TestShipped2026(t *testing.T) {
	c := workdays.Default()
	cases := map[string]bool{
		"2026-01-01": false, // 元旦 (Thursday)
		"2026-01-04": true,  // make-up working Sunday
		"2026-01-05": true,  // ordinary Monday
		"2026-01-10": false, // ordinary Saturday
		"2026-02-14": true,  // make-up Saturday before 春节
		"2026-02-16": false, // 春节 Monday
		"2026-02-23": false, // last day of 春节
		"2026-02-24": true,
		"2026-02-28": true, // make-up Saturday after 春节
		"2026-05-05": false,
		"2026-05-09": true,
		"2026-09-20": true,
		"2026-10-07": false,
		"2026-10-08": true,
		"2026-10-10": true,
		"2026-12-01": true,
	}
	for d, want := range cases {
		if got := c.IsWorkday(day(d)); got != want {
			t.Errorf("%s: workday %v, want %v", d, got, want)
		}
	}
	if !c.Known(day("2026-06-01")) || c.Known(day("2031-06-01")) {
		t.Error("Known is wrong")
	}
	// Days count in Beijing: 16:30 UTC on 2026-09-30 is already 1 October there.
	if c.IsWorkday(time.Date(2026, 9, 30, 16, 30, 0, 0, time.UTC)) {
		t.Error("a UTC instant that is a holiday in Beijing counted as a working day")
	}
}

func TestDeadline(t *testing.T) {
	c := workdays.Default()
	cases := []struct {
		from string
		n    int
		due  string // the last working day; the deadline is its end
	}{
		{"2026-11-27", 5, "2026-12-04"}, // Friday → next Friday
		{"2026-09-28", 5, "2026-10-10"}, // 09-29, 09-30, 10-08, 10-09, 10-10 (a make-up Saturday)
		{"2026-02-12", 3, "2026-02-24"}, // 02-13, 02-14 (a make-up Saturday), 02-24
		{"2026-12-31", 1, "2027-01-04"}, // 2027 not published: 1 January (fixed date) and the weekend off
		{"2026-12-25", 5, "2027-01-04"}, // 12-28..12-31, then past New Year's Day and the weekend
	}
	for _, tc := range cases {
		got := c.Deadline(day(tc.from), tc.n)
		want := day(tc.due).Add(-10*time.Hour).AddDate(0, 0, 1)
		if !got.Equal(want) {
			t.Errorf("%d working days after %s: due %v, want the end of %s", tc.n, tc.from, got, tc.due)
		}
	}
}

func TestWithRefusesBadFiles(t *testing.T) {
	c := workdays.Default()
	for name, f := range map[string]string{
		"not JSON":         `{`,
		"year twice":       `{"year":2026,"holidays":[]}`,
		"workday weekday":  `{"year":2030,"workdays":["2030-01-02"]}`,
		"date of another":  `{"year":2030,"holidays":[{"name":"x","from":"2031-01-01","to":"2031-01-02"}]}`,
		"end before start": `{"year":2030,"holidays":[{"name":"x","from":"2030-01-05","to":"2030-01-02"}]}`,
	} {
		if _, err := c.With([]byte(f)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	next, err := c.With([]byte(`{"year":2030,"holidays":[{"name":"元旦","from":"2030-01-01","to":"2030-01-01"}]}`))
	if err != nil || next.IsWorkday(day("2030-01-01")) || !next.Known(day("2030-03-01")) || c.Known(day("2030-03-01")) {
		t.Fatalf("adding a year: %v", err)
	}
}

func ExampleCalendar_Deadline() {
	c := workdays.Default()
	proposed := time.Date(2026, 9, 28, 9, 0, 0, 0, workdays.Beijing)
	fmt.Println(c.Deadline(proposed, 5).Format(time.RFC3339))
	// Output: 2026-10-11T00:00:00+08:00
}

// For 2027, before the State Council's notice, the statutory holidays are
// days off, lunar ones included (Spring Festival Eve 5 February 2027 to the
// third day), but nothing else is: no bridge day, no make-up working day.
func TestProvisional2027(t *testing.T) {
	c := workdays.Default()
	if c.Known(day("2027-03-01")) || !c.Provisional(day("2027-03-01")) || c.Provisional(day("2026-03-01")) || c.Provisional(day("2031-03-01")) {
		t.Fatal("2027 must be provisional: statutory days shipped, no notice")
	}
	for d, want := range map[string]bool{
		"2027-01-01": false, // 元旦, Friday
		"2027-02-04": true,  // the Thursday before 除夕
		"2027-02-05": false, // 除夕, Friday
		"2027-02-08": false, // 正月初三, Monday
		"2027-02-09": true,  // no bridge day without the notice
		"2027-04-05": false, // 清明, Monday
		"2027-06-09": false, // 端午, Wednesday
		"2027-09-15": false, // 中秋, Wednesday
		"2027-10-04": true,  // 国庆 is 1–3 October by law; the rest is the notice's
		"2027-12-01": true,
	} {
		if got := c.IsWorkday(day(d)); got != want {
			t.Errorf("%s: workday %v, want %v", d, got, want)
		}
	}
	// A notice added for 2027 replaces the provisional days.
	notice := []byte(`{"year": 2027, "source": "test", "holidays": [{"name": "春节", "from": "2027-02-05", "to": "2027-02-12"}], "workdays": ["2027-02-20"]}`)
	n, err := c.With(notice)
	if err != nil {
		t.Fatal(err)
	}
	if !n.Known(day("2027-02-09")) || n.Provisional(day("2027-02-09")) || n.IsWorkday(day("2027-02-09")) || !n.IsWorkday(day("2027-02-20")) || !n.IsWorkday(day("2027-04-05")) {
		t.Fatal("the notice did not take over from the statutory days")
	}
}
