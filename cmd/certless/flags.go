package main

import (
	"encoding/base64"
	"net/url"
	"time"
)

// parseTimeFlag reads an RFC 3339 instant; "" means now.
func parseTimeFlag(s string) (time.Time, error) {
	if s == "" {
		return time.Now().UTC(), nil
	}
	return time.Parse(time.RFC3339, s)
}

// b64url decodes unpadded base64url, as in a compact JWS.
func b64url(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func parseURL(s string) (*url.URL, error) { return url.Parse(s) }

func userInfo(name string) *url.Userinfo { return url.UserPassword(name, "xxxxx") }
