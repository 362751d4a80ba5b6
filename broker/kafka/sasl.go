package kafka

import (
	"context"

	kafkasasl "github.com/segmentio/kafka-go/sasl"
	franzsasl "github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// kafka-go's own SCRAM mechanism needs github.com/xdg-go/scram, a module the
// project does not carry; franz-go's SCRAM client (standard library only,
// already a dependency through kfake) speaks the same RFC 5802 exchange, so
// it is adapted to kafka-go's SASL interface instead.

// scramMechanism returns a kafka-go SASL mechanism for SCRAM-SHA-256 or -512.
func scramMechanism(name, user, pass string) kafkasasl.Mechanism {
	auth := scram.Auth{User: user, Pass: pass}
	m := auth.AsSha256Mechanism()
	if name == MechanismSCRAMSHA512 {
		m = auth.AsSha512Mechanism()
	}
	return franzMechanism{m}
}

type franzMechanism struct{ m franzsasl.Mechanism }

func (f franzMechanism) Name() string { return f.m.Name() }

func (f franzMechanism) Start(ctx context.Context) (kafkasasl.StateMachine, []byte, error) {
	host := ""
	if md := kafkasasl.MetadataFromContext(ctx); md != nil {
		host = md.Host
	}
	sess, first, err := f.m.Authenticate(ctx, host)
	if err != nil {
		return nil, nil, err
	}
	return franzSession{sess}, first, nil
}

type franzSession struct{ s franzsasl.Session }

func (f franzSession) Next(_ context.Context, challenge []byte) (bool, []byte, error) {
	return f.s.Challenge(challenge)
}
