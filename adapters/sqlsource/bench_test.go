package sqlsource_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/adaptertest"
	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/adapters/sqlsource"
)

const benchPersons, benchSeed = 10000, 99

// benchQueries is a mix of every query type over the seeded persons.
func benchQueries() []adapters.Query {
	ds := records.Generate(benchSeed, benchPersons)
	byID := map[string]records.Person{}
	for _, p := range ds.Persons {
		byID[p.IDNumber] = p
	}
	var qs []adapters.Query
	types := adapters.AllQueryTypes()
	for i, k := range ds.Kinship {
		if i >= 2000 {
			break
		}
		p, r := byID[k.PersonID], byID[k.RelativeID]
		typ := types[i%len(types)]
		q := adapters.Query{Type: typ, Subject: adapters.Subject{IDNumber: p.IDNumber, Name: p.Name}, AsOf: adaptertest.AsOf}
		if typ == adapters.QueryKinship {
			q.Related = &adapters.Subject{IDNumber: r.IDNumber, Name: r.Name}
		}
		qs = append(qs, q)
	}
	return qs
}

func benchAnswer(b *testing.B, src adapters.Source) {
	qs := benchQueries()
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := src.Answer(ctx, qs[i%len(qs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := src.Answer(ctx, qs[i%len(qs)]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}

// BenchmarkSQLiteAnswer: go test -run '^$' -bench Answer ./adapters/sqlsource/
func BenchmarkSQLiteAnswer(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.db")
	if err := sqlsource.Seed(context.Background(), path, benchPersons, benchSeed, nil); err != nil {
		b.Fatal(err)
	}
	benchAnswer(b, openSource(b, path))
}

func BenchmarkPostgresAnswer(b *testing.B) {
	_, reader := seededPostgres(b, benchPersons, benchSeed)
	benchAnswer(b, openSource(b, reader))
}

func BenchmarkMemoryAnswer(b *testing.B) {
	benchAnswer(b, records.NewSource("memory", records.NewMemory(records.Generate(benchSeed, benchPersons)), nil))
}
