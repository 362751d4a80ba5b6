package records

import (
	"context"
	"slices"
)

// Memory is a Store over a Dataset held in memory: the reference every other
// store is compared with, and a record source for development. It is
// read-only after NewMemory and safe for concurrent use.
type Memory struct {
	persons    map[string]*Person
	households map[string]*Household
	members    map[string][]Person
	kin        map[[2]string]string
	former     map[string][]FormerName
	residences map[string][]Residence
	crimes     map[string][]CriminalRecord
}

var _ Store = (*Memory)(nil)

// NewMemory indexes ds. ds must not change afterwards.
func NewMemory(ds *Dataset) *Memory {
	m := &Memory{
		persons:    make(map[string]*Person, len(ds.Persons)),
		households: make(map[string]*Household, len(ds.Households)),
		members:    make(map[string][]Person, len(ds.Households)),
		kin:        make(map[[2]string]string, len(ds.Kinship)),
		former:     map[string][]FormerName{},
		residences: make(map[string][]Residence, len(ds.Persons)),
		crimes:     map[string][]CriminalRecord{},
	}
	for i := range ds.Persons {
		p := &ds.Persons[i]
		m.persons[p.IDNumber] = p
		m.members[p.HouseholdID] = append(m.members[p.HouseholdID], *p)
	}
	for i := range ds.Households {
		m.households[ds.Households[i].ID] = &ds.Households[i]
	}
	for _, k := range ds.Kinship {
		m.kin[[2]string{k.PersonID, k.RelativeID}] = k.Relation
	}
	for _, f := range ds.FormerNames {
		m.former[f.PersonID] = append(m.former[f.PersonID], f)
	}
	for _, r := range ds.Residences {
		m.residences[r.PersonID] = append(m.residences[r.PersonID], r)
	}
	for _, c := range ds.CriminalRecords {
		m.crimes[c.PersonID] = append(m.crimes[c.PersonID], c)
	}
	return m
}

// Person implements Store.
func (m *Memory) Person(_ context.Context, id string) (*Person, error) {
	p, ok := m.persons[id]
	if !ok {
		return nil, nil
	}
	c := *p
	return &c, nil
}

// Household implements Store.
func (m *Memory) Household(_ context.Context, id string) (*Household, []Person, error) {
	h, ok := m.households[id]
	if !ok {
		return nil, nil, nil
	}
	c := *h
	return &c, slices.Clone(m.members[id]), nil
}

// Relation implements Store.
func (m *Memory) Relation(_ context.Context, personID, relativeID string) (string, error) {
	return m.kin[[2]string{personID, relativeID}], nil
}

// FormerNames implements Store.
func (m *Memory) FormerNames(_ context.Context, id string) ([]FormerName, error) {
	return slices.Clone(m.former[id]), nil
}

// Residences implements Store.
func (m *Memory) Residences(_ context.Context, id string) ([]Residence, error) {
	return slices.Clone(m.residences[id]), nil
}

// CriminalRecords implements Store.
func (m *Memory) CriminalRecords(_ context.Context, id string) ([]CriminalRecord, error) {
	return slices.Clone(m.crimes[id]), nil
}
