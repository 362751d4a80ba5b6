package policies

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/certless/certless/adapters/regions"
)

// Decision reasons, stable across receipts, metrics and reports, in the
// order Authorise checks them.
const (
	DenyNoAgreement         = "no_agreement"           // no agreement names the requester
	DenyNotInForce          = "agreement_not_in_force" // Detail: one of the Detail* codes
	DenyQueryNotAllowed     = "query_not_allowed"
	DenyPurposeNotAllowed   = "purpose_not_allowed"
	DenyCaseRefMissing      = "case_reference_missing"
	DenyOutsideScope        = "outside_scope"
	DenyOutsideServiceHours = "outside_service_hours"
	DenyQuotaExceeded       = "quota_exceeded"
)

// Details of DenyNotInForce.
const (
	DetailProposed    = "proposed"
	DetailSuspended   = "suspended"
	DetailExpired     = "expired"
	DetailTerminated  = "terminated"
	DetailNotYetValid = "not_yet_valid"
)

// Request is what authorisation looks at: verified, typed facts only.
type Request struct {
	Agency  string // the verified sender
	Query   string // the query type
	Purpose string // purpose.basis
	CaseRef string // purpose.case_ref
	// SubjectRegion is the region part of the subject's ID number (its
	// first 6 digits).
	SubjectRegion string
	// AgencyRegion is the requester's GB/T 2260 region in the docking
	// directory. A query type whose terms set no scope reaches the
	// residents of that region only (a county bureau its county); an
	// agreement widens (or narrows) that with an explicit scope. Empty: no
	// default scope.
	AgencyRegion string
}

// Decision is Authorise's answer.
type Decision struct {
	Allowed bool
	// Reason is one of the Deny* codes when !Allowed.
	Reason string
	Detail string
	// Agreement is the agreement the decision rests on: nil only for
	// no_agreement.
	Agreement *Ref
	// Fields the answer may carry (allowed decisions): the agreement's
	// list for the query, never empty.
	Fields []string
	// AnswerMismatch: an identity answer may say that the ID number exists
	// under another name.
	AnswerMismatch bool
}

// Usage counts uses against quotas; the decision store implements it, so
// broker instances share one budget.
type Usage interface {
	// Take atomically counts one use by agency under agreement in every
	// window of limits that has a limit (calendar minute, day and month of
	// now in Beijing time) and returns false, counting nothing, when any of
	// them is already full. An error is transient: nothing was counted.
	Take(ctx context.Context, agency string, agreement Ref, limits Quotas, now time.Time) (bool, error)
}

// ErrNoUsage is returned by Authorise when an agreement with quotas is
// asked without a Usage.
var ErrNoUsage = errors.New("policies: an agreement has quotas but no Usage counts them")

// Authorise decides r at now. It is pure: the answer depends only on s, r,
// now and usage. Its steps, each with its reason:
//
//  1. no_agreement: no agreement in the set names r.Agency as requester.
//  2. Per agreement id, the version that governs at now is the highest
//     version that has taken effect (not a proposal, validity.from
//     reached); a higher proposal or one not yet valid leaves the previous
//     version in force, and a version that took effect supersedes the
//     lower ones even when it is later suspended. With no version taken
//     effect, the highest one governs (and is not in force).
//  3. The governing versions that list r.Query are the candidates, in force
//     first, then by version (highest first), then by id. None in force:
//     agreement_not_in_force citing the first; none listing the query:
//     query_not_allowed citing the requester's first agreement in force
//     (or agreement_not_in_force when none is).
//  4. Each candidate in force is checked in order: purpose_not_allowed,
//     case_reference_missing, outside_scope, outside_service_hours. The
//     first that passes decides; when none does, the first candidate's
//     denial is the answer.
//  5. quota_exceeded: usage.Take said its quota is full. It runs last, so
//     only a request that would otherwise be allowed counts.
//
// The returned error is transient (usage failed, or ErrNoUsage): retry.
func (s *Set) Authorise(ctx context.Context, r Request, now time.Time, usage Usage) (Decision, error) {
	mine := s.governing(r.Agency, now)
	if len(mine) == 0 {
		return Decision{Reason: DenyNoAgreement, Detail: fmt.Sprintf("no agreement names %s as requester", r.Agency)}, nil
	}
	var covering []*Info
	for _, e := range mine {
		if e.Agreement.Terms(r.Query) != nil {
			covering = append(covering, e)
		}
	}
	if len(covering) == 0 {
		first := mine[0]
		if detail := notInForce(first, now); detail != "" {
			return deny(first, DenyNotInForce, detail), nil
		}
		return deny(first, DenyQueryNotAllowed, fmt.Sprintf("%s does not allow %s", first.Ref.ID, r.Query)), nil
	}
	if detail := notInForce(covering[0], now); detail != "" {
		return deny(covering[0], DenyNotInForce, detail), nil
	}
	var first *Decision
	for _, e := range covering {
		if notInForce(e, now) != "" {
			break // sorted in force first
		}
		d, ok := check(e, r, now)
		if !ok {
			if first == nil {
				first = &d
			}
			continue
		}
		a := e.Agreement
		if a.Quotas.Limited() {
			if usage == nil {
				return Decision{}, ErrNoUsage
			}
			ok, err := usage.Take(ctx, r.Agency, e.Ref, a.Quotas, now)
			if err != nil {
				return Decision{}, fmt.Errorf("policies: quota of %s: %w", e.Ref.ID, err)
			}
			if !ok {
				return deny(e, DenyQuotaExceeded, quotaText(a.Quotas)), nil
			}
		}
		return d, nil
	}
	return *first, nil
}

// governing returns the governing version of each agreement id of
// requester at now, in force first, then by version descending, then id.
func (s *Set) governing(requester string, now time.Time) []*Info {
	all := s.byRequester[requester] // by id, then version
	var out []*Info
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].Ref.ID == all[i].Ref.ID {
			j++
		}
		gov := all[j-1] // highest
		for k := j - 1; k >= i; k-- {
			a := all[k].Agreement
			if a.Status != StatusProposed && !now.Before(a.Validity.From) {
				gov = all[k]
				break
			}
		}
		out = append(out, gov)
		i = j
	}
	inForce := make(map[*Info]bool, len(out))
	for _, e := range out {
		inForce[e] = notInForce(e, now) == ""
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if inForce[a] != inForce[b] {
			return inForce[a]
		}
		if a.Ref.Version != b.Ref.Version {
			return a.Ref.Version > b.Ref.Version
		}
		return a.Ref.ID < b.Ref.ID
	})
	return out
}

// InForce returns the agreement versions in force at now: per agreement
// id, the version that governs (see Authorise), when it is in force. The
// order is requester, then id.
func (s *Set) InForce(now time.Time) []Info {
	requesters := make([]string, 0, len(s.byRequester))
	for r := range s.byRequester {
		requesters = append(requesters, r)
	}
	sort.Strings(requesters)
	var out []Info
	for _, r := range requesters {
		gov := s.governing(r, now)
		sort.SliceStable(gov, func(i, j int) bool { return gov[i].Ref.ID < gov[j].Ref.ID })
		for _, e := range gov {
			if notInForce(e, now) == "" {
				out = append(out, *e)
			}
		}
	}
	return out
}

// notInForce returns "" when e is in force at now, else the Detail code.
func notInForce(e *Info, now time.Time) string {
	a := e.Agreement
	status, _ := e.StatusAt(now)
	switch {
	case a.Status == StatusProposed:
		return DetailProposed
	case status == StatusTerminated:
		return DetailTerminated
	case status == StatusExpired || !now.Before(a.Validity.Until):
		return DetailExpired
	case now.Before(a.Validity.From):
		return DetailNotYetValid
	case status == StatusSuspended:
		return DetailSuspended
	case status != StatusActive:
		return string(status)
	}
	return ""
}

// check runs step 4 on one agreement in force.
func check(e *Info, r Request, now time.Time) (Decision, bool) {
	t := e.Agreement.Terms(r.Query)
	if !slices.Contains(t.Purposes, r.Purpose) {
		return deny(e, DenyPurposeNotAllowed, fmt.Sprintf("%s is not among %s", r.Purpose, strings.Join(t.Purposes, ", "))), false
	}
	if t.CaseRefRequired && !CaseRefPresent(r.CaseRef) {
		return deny(e, DenyCaseRefMissing, fmt.Sprintf("%s needs a case reference for %s", e.Ref.ID, r.Query)), false
	}
	scope := t.Scope
	if len(scope) == 0 && r.AgencyRegion != "" {
		scope = []string{r.AgencyRegion}
	}
	if len(scope) > 0 && !InScope(r.SubjectRegion, scope) {
		return deny(e, DenyOutsideScope, fmt.Sprintf("subject region %s is outside %s", r.SubjectRegion, strings.Join(scope, ", "))), false
	}
	if h := e.Agreement.ServiceHours; h != nil && !h.Open(now) {
		return deny(e, DenyOutsideServiceHours, fmt.Sprintf("%s Beijing time is outside %s–%s%s", now.In(Beijing).Format("Mon 15:04"), h.From, h.To, weekdaysText(h.Weekdays))), false
	}
	ref := e.Ref
	return Decision{Allowed: true, Agreement: &ref, Fields: slices.Clone(t.Fields), AnswerMismatch: t.AnswerMismatch}, true
}

func deny(e *Info, reason, detail string) Decision {
	ref := e.Ref
	return Decision{Reason: reason, Detail: detail, Agreement: &ref}
}

// Open reports whether now falls in the service hours: Beijing time, From
// inclusive, To exclusive, on one of Weekdays (every day when empty).
func (h *ServiceHours) Open(now time.Time) bool {
	t := now.In(Beijing)
	if len(h.Weekdays) > 0 && !slices.Contains(h.Weekdays, isoWeekday(t)) {
		return false
	}
	from, _ := clock(h.From)
	to, _ := clock(h.To)
	m := t.Hour()*60 + t.Minute()
	return from <= m && m < to
}

func isoWeekday(t time.Time) int { return (int(t.Weekday())+6)%7 + 1 }

func weekdaysText(d []int) string {
	if len(d) == 0 {
		return ""
	}
	return fmt.Sprintf(" on weekdays %v", d)
}

func quotaText(q Quotas) string {
	var parts []string
	if q.PerMinute > 0 {
		parts = append(parts, fmt.Sprintf("%d per minute", q.PerMinute))
	}
	if q.PerDay > 0 {
		parts = append(parts, fmt.Sprintf("%d per day", q.PerDay))
	}
	if q.PerMonth > 0 {
		parts = append(parts, fmt.Sprintf("%d per month", q.PerMonth))
	}
	return "quota full: " + strings.Join(parts, ", ")
}

// InScope reports whether region (six digits) is one of scope or lies under
// one of them (county under prefecture under province, by the GB/T 2260
// table of package regions). An unknown region is in no scope.
func InScope(region string, scope []string) bool {
	for _, c := range regions.Chain(region) {
		if slices.Contains(scope, c) {
			return true
		}
	}
	// An ID number keeps the region code it was issued under, also after
	// the division was renamed or retired (Jiutai's 220181, Gongzhuling's
	// 220381): by GB/T 2260's structure a province XX0000 covers every
	// XX…. code and a prefecture XXYY00 every XXYY.. code.
	if len(region) != 6 {
		return false
	}
	for _, c := range scope {
		switch {
		case len(c) != 6:
		case c[2:] == "0000" && region[:2] == c[:2]:
			return true
		case c[4:] == "00" && region[:4] == c[:4]:
			return true
		}
	}
	return false
}

// placeholders are case references that say there is none. They are
// compared after lower-casing and dropping everything but letters and
// digits, so "N/A", "n.a." and "—none—" are all placeholders.
var placeholders = map[string]bool{
	"none": true, "null": true, "nil": true, "na": true, "nan": true,
	"tbd": true, "todo": true, "unknown": true, "undefined": true,
	"test": true, "xxx": true,
	"无": true, "暂无": true, "空": true, "待定": true, "没有": true, "不适用": true,
	"无案号": true, "暂无案号": true, "略": true,
}

// CaseRefPresent reports whether caseRef is a real case reference, which
// is what an agreement's case_ref_required asks for. The message schema
// already makes purpose.case_ref 1–128 characters, so agencies without a
// case fill it with a placeholder; a reference therefore counts as missing
// when it has no letter or digit at all ("-", "/", "   ") or, reduced to
// its letters and digits and lower-cased, is one of the placeholders
// (none, n/a, null, tbd, unknown, 无, 暂无 ...), or only zeros. Full-width
// forms count as their ASCII ones (NFKC).
func CaseRefPresent(caseRef string) bool {
	var b strings.Builder
	// NFKC first: a Chinese input method types "ＮＯＮＥ" and "Ｎ／Ａ".
	for _, r := range norm.NFKC.String(caseRef) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	k := b.String()
	return k != "" && !placeholders[k] && strings.Trim(k, "0") != ""
}
