package sqlsource

import (
	"context"
	"fmt"
	"strings"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/records"
)

// eventSources says, per query type with a change feed, where its dated
// events are: the table joined to persons, and the date column.
var eventSources = map[adapters.QueryType]struct{ from, day string }{
	adapters.QueryHukouCancellation: {"persons p", "p.cancel_date"},
	adapters.QueryCriminalRecord:    {"criminal_records e JOIN persons p ON p.id_number = e.person_id", "e.judgment_date"},
	adapters.QueryResidence:         {"residences e JOIN persons p ON p.id_number = e.person_id", "e.from_date"},
	adapters.QueryFormerNames:       {"former_names e JOIN persons p ON p.id_number = e.person_id", "e.until_date"},
}

// eventQuery is the statement listing the events of typ in dialect d: day
// as 'YYYY-MM-DD' text (a DATE in PostgreSQL, text in SQLite), in the
// period, of persons registered under a code prefix, after the cursor.
func eventQuery(d Dialect, typ adapters.QueryType) (string, bool) {
	src, ok := eventSources[typ]
	if !ok {
		return "", false
	}
	day := src.day
	if d == Postgres {
		day += "::text"
	}
	return `SELECT DISTINCT ` + day + `, p.id_number FROM ` + src.from + ` JOIN households h ON h.id = p.household_id
		WHERE ` + src.day + ` IS NOT NULL AND ` + day + ` > ? AND ` + day + ` <= ? AND h.region_code LIKE ?
		AND (? = '' OR ` + day + ` > ? OR (` + day + ` = ? AND p.id_number > ?))
		ORDER BY 1, 2 LIMIT ?`, true
}

// sqliteEventQueries are prepared with the other statements.
func sqliteEventQueries() []string {
	var out []string
	for _, t := range adapters.ChangeTypes {
		q, _ := eventQuery(SQLite, t)
		out = append(out, q)
	}
	return out
}

// Events implements records.ChangeStore.
func (s store) Events(ctx context.Context, typ adapters.QueryType, prefix, after, until, cursorDay, cursorID string, limit int) ([]records.Event, error) {
	d := SQLite
	if _, ok := s.q.(*pgQuerier); ok {
		d = Postgres
	}
	q, ok := eventQuery(d, typ)
	if !ok {
		return nil, fmt.Errorf("%w: %s has no change feed", adapters.ErrInvalidQuery, typ)
	}
	if strings.ContainsAny(prefix, "%_") {
		return nil, fmt.Errorf("%w: region prefix %q", adapters.ErrInvalidQuery, prefix)
	}
	var out []records.Event
	err := s.q.query(ctx, q, []any{after, until, prefix + "%", cursorDay, cursorDay, cursorDay, cursorID, limit}, func(r rowScanner) error {
		var e records.Event
		if err := r.Scan(date{&e.Day}, &e.IDNumber); err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlsource: events: %w", err)
	}
	return out, nil
}

var _ records.ChangeStore = store{}

// Changes implements adapters.ChangeFeed.
func (s *Source) Changes(ctx context.Context, q adapters.ChangeQuery) (adapters.ChangePage, error) {
	return s.answers.Changes(ctx, q)
}

var _ adapters.ChangeFeed = (*Source)(nil)
