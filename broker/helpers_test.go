package broker_test

import (
	"encoding/base64"

	"go.uber.org/zap"
)

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func zapNop() *zap.Logger { return zap.NewNop() }
