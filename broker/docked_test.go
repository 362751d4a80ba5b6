package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/certless/certless/broker"
)

type dockingMap map[string]broker.DockedAgency

func (m dockingMap) Docked(id string) (broker.DockedAgency, bool) { a, ok := m[id]; return a, ok }

// recordingAuth allows everything and remembers what it was asked.
type recordingAuth struct{ got []broker.AuthRequest }

func (r *recordingAuth) Authorise(_ context.Context, req broker.AuthRequest, _ time.Time) (broker.Authorisation, error) {
	r.got = append(r.got, req)
	return broker.Authorisation{Allowed: true}, nil
}

func TestDockedDeniesSuspendedAndUndockedAndPassesTheRegion(t *testing.T) {
	next := &recordingAuth{}
	d := &broker.Docked{Directory: dockingMap{
		"edu-jian":    {Level: "county", Region: "220582"},
		"notary-gone": {Level: "county", Region: "222403", Suspended: true},
	}, Next: next}
	ctx, now := context.Background(), time.Now()

	for agency, reason := range map[string]string{"notary-gone": broker.ReasonAgencySuspended, "bank": broker.ReasonUnknownAgency} {
		a, err := d.Authorise(ctx, broker.AuthRequest{Agency: agency, Query: "identity"}, now)
		if err != nil || a.Allowed || a.Reason != reason || a.Detail == "" {
			t.Errorf("%s: %+v, %v; want denied %s with a detail", agency, a, err, reason)
		}
	}
	if len(next.got) != 0 {
		t.Fatalf("the agreements were asked for a suspended or undocked agency: %+v", next.got)
	}
	a, err := d.Authorise(ctx, broker.AuthRequest{Agency: "edu-jian", Query: "residence", SubjectRegion: "220582"}, now)
	if err != nil || !a.Allowed {
		t.Fatalf("active agency: %+v, %v", a, err)
	}
	if len(next.got) != 1 || next.got[0].AgencyRegion != "220582" || next.got[0].SubjectRegion != "220582" {
		t.Fatalf("the agreements were asked %+v; want the agency's directory region passed on", next.got)
	}
}
