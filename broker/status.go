package broker

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/schemas"
)

// statusListSize is the entries of one revocation status list (package
// statuslist's Size; the broker does not import the verifier's package).
const statusListSize = 131072

// StatusReserver reserves status indexes; store.Store is one.
type StatusReserver interface {
	ReserveStatus(ctx context.Context, n int) (int64, error)
}

// StatusAllocator gives each receipt its entry in the revocation status
// lists (W3C Bitstring Status List v1.0): index i is bit i mod 131072 of
// the list <Base>/<i div 131072>. Indexes are reserved from the store in
// blocks, so the hot path asks the database once per Block receipts; a
// block not used up when the broker stops is never handed out again.
type StatusAllocator struct {
	Store StatusReserver
	// Base is the URL the lists are published under (".../status"); a
	// function, as the operations endpoint's address may be known late.
	Base func() string
	// Block is how many indexes one reservation takes (default 1024).
	Block int

	mu         sync.Mutex
	next, stop int64
}

// Entry returns the next index and its entry.
func (a *StatusAllocator) Entry(ctx context.Context) (int64, *schemas.StatusEntry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next == a.stop {
		n := a.Block
		if n <= 0 {
			n = 1024
		}
		first, err := a.Store.ReserveStatus(ctx, n)
		if err != nil {
			return 0, nil, fmt.Errorf("status index: %w", err)
		}
		a.next, a.stop = first, first+int64(n)
	}
	i := a.next
	a.next++
	list := strings.TrimRight(a.Base(), "/") + "/" + strconv.FormatInt(i/statusListSize, 10)
	bit := strconv.FormatInt(i%statusListSize, 10)
	return i, &schemas.StatusEntry{ID: list + "#" + bit, Type: "BitstringStatusListEntry", StatusPurpose: "revocation",
		StatusListIndex: bit, StatusListCredential: list}, nil
}

// SubjectKeyer keys decisions by query and subject with HMAC-SHA256 under a
// secret of the deployment (every broker of it shares the secret, so one
// subject's receipts are found across them): the key of a query type, the
// subject's ID number and, for kinship, the related subject's.
type SubjectKeyer struct{ Secret []byte }

// Key implements RequestHandler.SubjectKey.
func (k SubjectKeyer) Key(q adapters.Query) string {
	m := hmac.New(sha256.New, k.Secret)
	m.Write([]byte(string(q.Type) + "\x00" + q.Subject.IDNumber))
	if q.Related != nil {
		m.Write([]byte("\x00" + q.Related.IDNumber))
	}
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}
