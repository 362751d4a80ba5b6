package records_test

import (
	"testing"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/adaptertest"
	"github.com/certless/certless/adapters/records"
)

var fixtures = adaptertest.Fixtures{Seed: 11, Persons: 3000}

func TestMemoryConformance(t *testing.T) {
	adaptertest.Run(t, func(*testing.T) adapters.Source {
		return records.NewSource("memory", records.NewMemory(records.Generate(fixtures.Seed, fixtures.Persons)), nil)
	}, fixtures)
}
