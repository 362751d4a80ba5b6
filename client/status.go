package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/certless/certless/statuslist"
)

// ErrNoStatus is returned for a receipt that carries no credentialStatus
// (issued before status lists).
var ErrNoStatus = errors.New("client: the receipt carries no revocation status entry")

// CheckStatus reads the receipt's bit in the revocation status list list
// (the BitstringStatusListCredential vc+jwt the broker serves at the
// entry's statusListCredential URL, fetched or saved), which must be signed
// by the broker's key.
func CheckStatus(r *Receipt, list []byte, b *Broker) (statuslist.Check, error) {
	if r.CredentialStatus == nil {
		return statuslist.Check{}, ErrNoStatus
	}
	c, err := statuslist.Open(list, b)
	if err != nil {
		return statuslist.Check{}, err
	}
	return c.Check(*r.CredentialStatus)
}

// maxStatusList bounds a fetched status list credential.
const maxStatusList = 4 << 20

// FetchStatusList fetches the status list credential the receipt's entry
// names (at most 4 MiB, within ctx).
func FetchStatusList(ctx context.Context, r *Receipt) ([]byte, error) {
	if r.CredentialStatus == nil {
		return nil, ErrNoStatus
	}
	url := r.CredentialStatus.StatusListCredential
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("client: status list %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: status list: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("client: status list %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusList+1))
	if err != nil {
		return nil, fmt.Errorf("client: status list %s: %w", url, err)
	}
	if len(b) > maxStatusList {
		return nil, fmt.Errorf("client: status list %s: more than %d bytes", url, maxStatusList)
	}
	return b, nil
}
