package adapters

import (
	"context"
	"fmt"
	"regexp"
	"time"
)

// ChangeQuery asks a source for the records of one type that changed in a
// jurisdiction during a period: the periodic exchange (定期交换) reads
// these to push changes, such as the day's hukou cancellations, to partner
// agencies.
type ChangeQuery struct {
	// Type is the query type whose records changed. Dated events carry
	// change: hukou_cancellation (a registration cancelled), criminal_record
	// (a judgment), residence (a move), former_names (a name changed).
	Type QueryType `json:"type"`
	// Region is a GB/T 2260 code: the persons registered in it (a
	// prefecture or province code covers its counties).
	Region string `json:"region"`
	// After (the watermark, exclusive) and Until (inclusive) bound the
	// period. Records are dated by China's calendar day: an event of day D
	// is in the period when D is after After's day and not after Until's,
	// both in Beijing time.
	After time.Time `json:"after"`
	Until time.Time `json:"until"`
	// Cursor continues a page (ChangePage.Next); "" starts the period.
	Cursor string `json:"cursor,omitempty"`
	// Limit bounds the page (1..MaxChangePage; 0 means MaxChangePage).
	Limit int `json:"limit,omitempty"`
}

// MaxChangePage bounds one page of changes.
const MaxChangePage = 1000

// ChangeTypes are the query types that have change feeds.
var ChangeTypes = []QueryType{QueryHukouCancellation, QueryCriminalRecord, QueryResidence, QueryFormerNames}

var cursorForm = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}/[0-9]{17}[0-9X]$`)

// Validate checks q; errors wrap ErrInvalidQuery.
func (q ChangeQuery) Validate() error {
	ok := false
	for _, t := range ChangeTypes {
		ok = ok || q.Type == t
	}
	switch {
	case !ok:
		return fmt.Errorf("%w: %q has no change feed (want one of %v)", ErrInvalidQuery, q.Type, ChangeTypes)
	case len(q.Region) != 6 || q.Region[0] < '1' || q.Region[0] > '9':
		return fmt.Errorf("%w: region %q is not a GB/T 2260 code", ErrInvalidQuery, q.Region)
	case q.Until.IsZero() || !q.After.Before(q.Until):
		return fmt.Errorf("%w: period (%s, %s] is empty", ErrInvalidQuery, q.After.Format(time.RFC3339), q.Until.Format(time.RFC3339))
	case q.Cursor != "" && !cursorForm.MatchString(q.Cursor):
		return fmt.Errorf("%w: cursor %q", ErrInvalidQuery, q.Cursor)
	case q.Limit < 0 || q.Limit > MaxChangePage:
		return fmt.Errorf("%w: limit %d outside 0..%d", ErrInvalidQuery, q.Limit, MaxChangePage)
	}
	for _, c := range q.Region[1:] {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: region %q is not a GB/T 2260 code", ErrInvalidQuery, q.Region)
		}
	}
	return nil
}

// Change is one changed record: the subject, the day of the change, and the
// subject's full answer of the query type as of the period's end (the
// broker minimises it to the agreement's fields).
type Change struct {
	Subject Subject   `json:"subject"`
	At      time.Time `json:"at"`
	Answer  Answer    `json:"answer"`
}

// ChangePage is one page of a change feed, oldest change first (by day,
// then ID number). Next continues it when More.
type ChangePage struct {
	Changes []Change `json:"changes"`
	Next    string   `json:"next,omitempty"`
	More    bool     `json:"more"`
}

// ChangeFeed is a source that lists changes.
type ChangeFeed interface {
	Changes(ctx context.Context, q ChangeQuery) (ChangePage, error)
}

// RegionPrefix is the code prefix a region covers: 220000 → "22",
// 220500 → "2205", 220582 → "220582".
func RegionPrefix(region string) string {
	switch {
	case len(region) == 6 && region[2:] == "0000":
		return region[:2]
	case len(region) == 6 && region[4:] == "00":
		return region[:4]
	}
	return region
}
