package adapters

// Field names of Answer.Fields, per query type. Agreements name these when
// they allow fields; the broker minimises answers to them.
//
// Dates are "2006-01-02" strings, instants RFC 3339 strings in UTC, lists
// []any of map[string]any.
const (
	// Every found answer carries FieldAsOf.
	FieldAsOf = "as_of"

	// identity: FieldIDNameMatch bool; FieldStatus "active" | "cancelled",
	// present only when the name matches.
	FieldIDNameMatch = "id_name_match"
	FieldStatus      = "status"

	// household: FieldRegistered bool (false when the subject's registration
	// is cancelled; no other fields then); id, head's name, current members
	// [{name, relation}] (relation to the head: "head", "spouse", "parent",
	// "child", "grandchild"), registered region code and full name.
	FieldRegistered  = "registered"
	FieldHouseholdID = "household_id"
	FieldHead        = "head"
	FieldMembers     = "members"
	FieldRegionCode  = "region_code"
	FieldRegionName  = "region_name"

	// kinship: FieldRelated bool; FieldRelation is what the related subject
	// is to the subject: "parent", "child", "spouse", "sibling",
	// "grandparent", "grandchild", or "none".
	FieldRelated  = "related"
	FieldRelation = "relation"

	// former_names: FieldHasFormerNames bool; FieldFormerNames
	// [{name, until}] oldest first, [] when none.
	FieldHasFormerNames = "has_former_names"
	FieldFormerNames    = "former_names"

	// residence: FieldResidences [{region_code, region_name, from, to}]
	// oldest first, "to" absent on the current one (present on the last one
	// when the registration was cancelled).
	FieldResidences = "residences"

	// hukou_cancellation: FieldCancelled bool; FieldReason "death" |
	// "emigration" and FieldDate only when cancelled.
	FieldCancelled = "cancelled"
	FieldReason    = "reason"
	FieldDate      = "date"

	// criminal_record: FieldHasCriminalRecord bool; FieldRecords
	// [{offence, court, judgment_date, sentence}] only when true.
	FieldHasCriminalRecord = "has_criminal_record"
	FieldRecords           = "records"
)

// Reasons a hukou registration is cancelled.
const (
	CancelDeath      = "death"
	CancelEmigration = "emigration"
)

// fieldsByType is the one fixed set of fields each query type may answer
// with: the documented fields above, the same as the receipt schema's.
var fieldsByType = map[QueryType][]string{
	QueryIdentity:          {FieldAsOf, FieldIDNameMatch, FieldStatus},
	QueryHousehold:         {FieldAsOf, FieldRegistered, FieldHouseholdID, FieldHead, FieldMembers, FieldRegionCode, FieldRegionName},
	QueryKinship:           {FieldAsOf, FieldRelated, FieldRelation},
	QueryFormerNames:       {FieldAsOf, FieldHasFormerNames, FieldFormerNames},
	QueryResidence:         {FieldAsOf, FieldResidences},
	QueryHukouCancellation: {FieldAsOf, FieldCancelled, FieldReason, FieldDate},
	QueryCriminalRecord:    {FieldAsOf, FieldHasCriminalRecord, FieldRecords},
}

// Fields returns the documented fields of query type t (a fresh slice; nil
// for an unknown type). An answer never carries any other field, whatever
// a source returned.
func (t QueryType) Fields() []string {
	return append([]string(nil), fieldsByType[t]...)
}
