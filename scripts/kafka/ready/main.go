// Command ready waits until a Kafka broker answers a metadata request that
// lists at least one live broker. scripts/services.sh uses it to tell a
// started broker from a JVM that is still booting or has failed.
//
//	go run ./scripts/kafka/ready -brokers 127.0.0.1:19092 -timeout 2s
//
// It exits 0 when a broker is ready and 1 when the timeout passes first.
//
// It speaks the Kafka protocol with the standard library only (Metadata v4,
// supported from Kafka 1.0 through 4.x) so that it builds in a second on a
// fresh machine, instead of compiling a Kafka client before the tests do.
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:19092", "comma-separated bootstrap brokers")
	timeout := flag.Duration("timeout", 30*time.Second, "give up after this long")
	flag.Parse()

	deadline := time.Now().Add(*timeout)
	var err error
	for {
		for _, addr := range strings.Split(*brokers, ",") {
			var n int
			if n, err = liveBrokers(addr, deadline); err == nil {
				fmt.Printf("kafka ready at %s: %d live broker(s)\n", addr, n)
				return
			}
		}
		if time.Until(deadline) < 200*time.Millisecond {
			fmt.Fprintln(os.Stderr, "kafka not ready:", err)
			os.Exit(1)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// liveBrokers sends one Metadata v4 request for no topics and returns how
// many brokers the response lists.
func liveBrokers(addr string, deadline time.Time) (int, error) {
	attempt := time.Now().Add(2 * time.Second)
	if attempt.After(deadline) {
		attempt = deadline
	}
	conn, err := net.DialTimeout("tcp", addr, time.Until(attempt))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(attempt); err != nil {
		return 0, err
	}

	const correlationID = 0x6365 // arbitrary
	var req bytes.Buffer
	be := binary.BigEndian
	req.Write(be.AppendUint16(nil, 3))             // api key: Metadata
	req.Write(be.AppendUint16(nil, 4))             // api version
	req.Write(be.AppendUint32(nil, correlationID)) // correlation id
	clientID := "certless-ready"
	req.Write(be.AppendUint16(nil, uint16(len(clientID))))
	req.WriteString(clientID)
	req.Write(be.AppendUint32(nil, 0)) // topics: none
	req.WriteByte(0)                   // allow_auto_topic_creation: false
	frame := be.AppendUint32(nil, uint32(req.Len()))
	if _, err := conn.Write(append(frame, req.Bytes()...)); err != nil {
		return 0, err
	}

	var size int32
	if err := binary.Read(conn, be, &size); err != nil {
		return 0, fmt.Errorf("read response size: %w", err)
	}
	if size < 12 || size > 1<<20 {
		return 0, fmt.Errorf("implausible response size %d", size)
	}
	resp := make([]byte, size)
	if _, err := io.ReadFull(conn, resp); err != nil {
		return 0, fmt.Errorf("read response: %w", err)
	}
	r := bytes.NewReader(resp)
	var hdr struct {
		CorrelationID int32
		Throttle      int32
		Brokers       int32
	}
	if err := binary.Read(r, be, &hdr); err != nil {
		return 0, err
	}
	if hdr.CorrelationID != correlationID {
		return 0, fmt.Errorf("correlation id %d, want %d", hdr.CorrelationID, correlationID)
	}
	if hdr.Brokers < 1 {
		return 0, errors.New("metadata lists no live broker yet")
	}
	return int(hdr.Brokers), nil
}
