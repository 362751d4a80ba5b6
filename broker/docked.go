package broker

import (
	"context"
	"fmt"
	"time"
)

// Denial reasons of the docking check.
const (
	// ReasonAgencySuspended denies every request of an agency the docking
	// directory has suspended, until it is resumed.
	ReasonAgencySuspended = "agency_suspended"
	// ReasonNotDocked denies a request of an agency the directory does not
	// hold (withdrawn while its messages were in flight).
	ReasonNotDocked = ReasonUnknownAgency
)

// DockedAgency is what authorisation needs of a directory entry.
type DockedAgency struct {
	// Level and Region place the agency (province / prefecture / county,
	// GB/T 2260 code).
	Level, Region string
	Suspended     bool
}

// Docking answers for the docking directory as the broker follows it.
type Docking interface {
	Docked(agency string) (DockedAgency, bool)
}

// Docked authorises against the docking directory before Next (the
// agreements): an agency the directory does not hold is denied
// unknown_agency, a suspended one agency_suspended, both signed like any
// denial; a docked, active agency's region is passed on as the default scope
// of its agreements (policies.Request.AgencyRegion).
type Docked struct {
	Directory Docking
	Next      Authoriser
}

// Authorise implements Authoriser.
func (d *Docked) Authorise(ctx context.Context, r AuthRequest, now time.Time) (Authorisation, error) {
	a, ok := d.Directory.Docked(r.Agency)
	switch {
	case !ok:
		return Authorisation{Reason: ReasonNotDocked, Detail: fmt.Sprintf("agency %s is not docked", r.Agency)}, nil
	case a.Suspended:
		return Authorisation{Reason: ReasonAgencySuspended, Detail: fmt.Sprintf("agency %s is suspended in the docking directory", r.Agency)}, nil
	}
	r.AgencyRegion = a.Region
	return d.Next.Authorise(ctx, r, now)
}
