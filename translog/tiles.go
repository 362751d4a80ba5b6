package translog

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/tlog"
)

// Source is what the tile handler reads: the latest checkpoint and the
// integrated tree's hashes and leaves.
type Source interface {
	// LatestCheckpoint returns the newest signed checkpoint, with the
	// cosignatures gathered for it; nil before the first.
	LatestCheckpoint(ctx context.Context) ([]byte, error)
	// ReadHashes returns the stored hashes at the given indexes.
	ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	// ReadLeaves returns the leaves [start, start+n).
	ReadLeaves(ctx context.Context, start int64, n int) ([][]byte, error)
}

// Content types of C2SP tlog-tiles.
const (
	checkpointType = "text/plain; charset=utf-8"
	tileType       = "application/octet-stream"
)

// Handler serves the log read-only as C2SP tlog-tiles. Mount it with
// http.StripPrefix so that it sees "/checkpoint" and "/tile/...". Full
// tiles never change and are cached for a year; partial tiles and the
// checkpoint are not cached for long.
func Handler(src Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /checkpoint", func(w http.ResponseWriter, r *http.Request) {
		b, err := src.LatestCheckpoint(r.Context())
		if err != nil {
			http.Error(w, "checkpoint unavailable", http.StatusServiceUnavailable)
			return
		}
		if b == nil {
			http.Error(w, "no checkpoint yet", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", checkpointType)
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(b)
	})
	mux.HandleFunc("GET /tile/", func(w http.ResponseWriter, r *http.Request) {
		t, err := torchwood.ParseTilePath(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			http.Error(w, "malformed tile path", http.StatusBadRequest)
			return
		}
		data, err := readTile(r.Context(), src, t)
		switch {
		case errors.Is(err, errNoTile):
			http.Error(w, "tile not in the log yet", http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, "tile unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", tileType)
		if t.W == 1<<t.H {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "public, max-age=10")
		}
		w.Write(data)
	})
	return mux
}

var errNoTile = errors.New("translog: tile beyond the checkpointed tree")

func readTile(ctx context.Context, src Source, t tlog.Tile) ([]byte, error) {
	b, err := src.LatestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errNoTile
	}
	c, err := ParseCheckpointBody(b)
	if err != nil {
		return nil, err
	}
	// The tile's last leaf, at level 0 terms, must be inside the tree.
	width := int64(1) << (uint(t.H) * uint(max(t.L, 0)))
	end := (t.N<<uint(t.H) + int64(t.W)) * width
	if end > c.N {
		return nil, errNoTile
	}
	if t.L == -1 {
		leaves, err := src.ReadLeaves(ctx, t.N<<uint(t.H), t.W)
		if err != nil {
			return nil, err
		}
		var out []byte
		for _, l := range leaves {
			if out, err = torchwood.AppendTileEntry(out, l); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return tlog.ReadTileData(t, HashReader(ctx, src))
}

// HashReader adapts a Source to tlog.HashReader, for proofs.
func HashReader(ctx context.Context, src interface {
	ReadHashes(context.Context, []int64) ([]tlog.Hash, error)
}) tlog.HashReader {
	return ctxReader{ctx, src}
}

type ctxReader struct {
	ctx context.Context
	src interface {
		ReadHashes(context.Context, []int64) ([]tlog.Hash, error)
	}
}

func (c ctxReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	hs, err := c.src.ReadHashes(c.ctx, indexes)
	if err == nil && len(hs) != len(indexes) {
		err = fmt.Errorf("translog: %d hashes for %d indexes", len(hs), len(indexes))
	}
	return hs, err
}
