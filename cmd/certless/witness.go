package main

import (
	"context"
	"errors"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/broker/checkpoint"
	"github.com/certless/certless/config"
	"github.com/certless/certless/translog/witness"
)

// newWitness is the C2SP tlog-witness client of a configured witness.
func newWitness(w config.Witness) (checkpoint.Witness, error) {
	c, err := witness.New(w.VKey, w.URL)
	if err != nil {
		return nil, err
	}
	return witnessAdapter{c}, nil
}

// witnessAdapter gives the checkpointer the cosignature line and the
// witness's known size on a conflict.
type witnessAdapter struct{ w *witness.Witness }

func (a witnessAdapter) Name() string { return a.w.Name }

func (a witnessAdapter) AddCheckpoint(ctx context.Context, old int64, proof tlog.TreeProof, signed []byte) ([]byte, error) {
	cs, err := a.w.AddCheckpoint(ctx, old, proof, signed)
	var conflict *witness.ConflictError
	if errors.As(err, &conflict) {
		return nil, knownSize{conflict}
	}
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, errors.New("witness returned no cosignature")
	}
	return []byte(cs[0].Line()), nil
}

type knownSize struct{ *witness.ConflictError }

func (k knownSize) KnownSize() int64 { return k.Size }
func (k knownSize) Unwrap() error    { return k.ConflictError }
