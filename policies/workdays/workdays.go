// Package workdays is China's working-day calendar, for the review
// deadlines of agreement proposals ("5 working days"): weekends are days
// off, the State Council's public holidays are days off, and its make-up
// working days (调休上班) are working days even on a weekend.
//
// The calendars of the years the State Council has published ship with the
// binary (cn-YEAR.json, from the State Council General Office's annual
// notice); an operator adds a year as soon as its notice is out, with a file
// of the same form (Load). For a year without its notice the statutory
// holidays themselves are days off — the fixed-date ones always, and the
// lunar ones (Spring Festival Eve to the third day, Qingming, Dragon Boat,
// Mid-Autumn) where their dates ship (statutory-YEAR.json) — but no bridge
// days or make-up working days, and Calendar.Known says so, so a caller can
// warn.
package workdays

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"sort"
	"time"
)

//go:embed cn-*.json statutory-*.json
var shipped embed.FS

// Beijing is the zone every date here is in (UTC+8, no daylight saving).
var Beijing = time.FixedZone("CST", 8*3600)

// File is one year's calendar as published.
type File struct {
	Year     int       `json:"year"`
	Source   string    `json:"source"`
	Holidays []Holiday `json:"holidays"`
	// Workdays are make-up working days that fall on a weekend.
	Workdays []string `json:"workdays"`
}

// Holiday is one public holiday period, both ends included.
type Holiday struct {
	Name string `json:"name"`
	From string `json:"from"`
	To   string `json:"to"`
}

// Calendar answers whether a date is a working day. It is immutable and
// safe for concurrent use.
type Calendar struct {
	off, on map[string]bool
	years   map[int]bool
	// statutory holds the statutory holidays of years without a notice,
	// provisional those years.
	statutory   map[string]bool
	provisional map[int]bool
}

// Statutory is the statutory holidays of a year whose notice is not out
// yet: the days themselves by law and the lunar calendar, nothing more.
type Statutory struct {
	Year   int      `json:"year"`
	Source string   `json:"source"`
	Days   []string `json:"days"`
}

// Default returns the calendar of the shipped years, and the statutory
// holidays of shipped years without a notice.
func Default() *Calendar {
	c, err := Load(shipped, "cn-*.json")
	if err == nil {
		err = c.addStatutory(shipped, "statutory-*.json")
	}
	if err != nil {
		panic(fmt.Sprintf("workdays: shipped calendar: %v", err)) // a build defect, caught by the tests
	}
	return c
}

func (c *Calendar) addStatutory(fsys fs.FS, pattern string) error {
	names, err := fs.Glob(fsys, pattern)
	if err != nil {
		return err
	}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return err
		}
		var s Statutory
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		for _, d := range s.Days {
			t, err := time.ParseInLocation(time.DateOnly, d, Beijing)
			if err != nil || t.Year() != s.Year {
				return fmt.Errorf("%s: day %q is not a date of %d", n, d, s.Year)
			}
			if c.statutory == nil {
				c.statutory = map[string]bool{}
			}
			c.statutory[d] = true
		}
		if c.provisional == nil {
			c.provisional = map[int]bool{}
		}
		c.provisional[s.Year] = true
	}
	return nil
}

// Load reads the calendar files matching pattern in fsys (for example the
// shipped ones plus an operator's next year).
func Load(fsys fs.FS, pattern string) (*Calendar, error) {
	names, err := fs.Glob(fsys, pattern)
	if err != nil {
		return nil, fmt.Errorf("workdays: %w", err)
	}
	c := &Calendar{off: map[string]bool{}, on: map[string]bool{}, years: map[int]bool{}}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("workdays: %w", err)
		}
		if err := c.add(b); err != nil {
			return nil, fmt.Errorf("workdays: %s: %w", n, err)
		}
	}
	return c, nil
}

// With returns c plus the calendar file b (JSON of the File form).
func (c *Calendar) With(b []byte) (*Calendar, error) {
	out := &Calendar{off: copyMap(c.off), on: copyMap(c.on), years: map[int]bool{}, statutory: c.statutory, provisional: c.provisional}
	for y := range c.years {
		out.years[y] = true
	}
	if err := out.add(b); err != nil {
		return nil, fmt.Errorf("workdays: %w", err)
	}
	return out, nil
}

func (c *Calendar) add(b []byte) error {
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if f.Year < 2000 || f.Year > 2200 {
		return fmt.Errorf("year %d out of range", f.Year)
	}
	if c.years[f.Year] {
		return fmt.Errorf("year %d given twice", f.Year)
	}
	in := func(s string) (time.Time, error) {
		d, err := time.ParseInLocation(time.DateOnly, s, Beijing)
		if err != nil {
			return d, err
		}
		if d.Year() != f.Year {
			return d, fmt.Errorf("%s is not in %d", s, f.Year)
		}
		return d, nil
	}
	for _, h := range f.Holidays {
		from, err := in(h.From)
		if err != nil {
			return fmt.Errorf("holiday %s: %w", h.Name, err)
		}
		to, err := in(h.To)
		if err != nil || to.Before(from) {
			return fmt.Errorf("holiday %s: bad end %q", h.Name, h.To)
		}
		for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
			c.off[d.Format(time.DateOnly)] = true
		}
	}
	for _, w := range f.Workdays {
		d, err := in(w)
		if err != nil {
			return fmt.Errorf("workday: %w", err)
		}
		if d.Weekday() != time.Saturday && d.Weekday() != time.Sunday {
			return fmt.Errorf("make-up working day %s is not on a weekend", w)
		}
		if c.off[w] {
			return fmt.Errorf("%s is both a holiday and a working day", w)
		}
		c.on[w] = true
	}
	c.years[f.Year] = true
	return nil
}

// IsWorkday reports whether the Beijing calendar day of t is a working day.
// For a year without its calendar, the statutory holidays (《全国年节及纪念日
// 放假办法》: New Year's Day, 1–2 May, 1–3 October, and the lunar ones where
// their dates ship) are days off too; bridge days and make-up working days
// need the year's notice.
func (c *Calendar) IsWorkday(t time.Time) bool {
	d := t.In(Beijing)
	key := d.Format(time.DateOnly)
	switch {
	case c.on[key]:
		return true
	case c.off[key]:
		return false
	case !c.years[d.Year()] && (fixedHoliday(d) || c.statutory[key]):
		return false
	}
	return d.Weekday() != time.Saturday && d.Weekday() != time.Sunday
}

// fixedHoliday reports the statutory holidays on fixed Gregorian dates.
func fixedHoliday(d time.Time) bool {
	switch m, day := d.Month(), d.Day(); {
	case m == time.January && day == 1, m == time.May && day <= 2, m == time.October && day <= 3:
		return true
	}
	return false
}

// Known reports whether the calendar of t's year (in Beijing) is loaded.
func (c *Calendar) Known(t time.Time) bool { return c.years[t.In(Beijing).Year()] }

// Provisional reports whether, for t's year without its notice, at least
// the statutory holidays (lunar ones included) are known.
func (c *Calendar) Provisional(t time.Time) bool {
	y := t.In(Beijing).Year()
	return !c.years[y] && c.provisional[y]
}

// Years lists the loaded years, sorted.
func (c *Calendar) Years() []int {
	out := make([]int, 0, len(c.years))
	for y := range c.years {
		out = append(out, y)
	}
	sort.Ints(out)
	return out
}

// Deadline is the end of the n-th working day after t (n ≥ 1): 24:00 Beijing
// time of that day, so a proposal made on Friday afternoon with n = 5 is due
// at the end of the next Friday when no holiday intervenes.
func (c *Calendar) Deadline(t time.Time, n int) time.Time {
	d := t.In(Beijing)
	day := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, Beijing)
	for n > 0 {
		day = day.AddDate(0, 0, 1)
		if c.IsWorkday(day) {
			n--
		}
	}
	return day.AddDate(0, 0, 1)
}

func copyMap(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
