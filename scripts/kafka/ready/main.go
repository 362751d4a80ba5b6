// Command ready waits until a Kafka cluster answers a metadata request with
// at least one live broker. scripts/services.sh uses it to tell a started
// broker from a JVM that is still booting or has failed.
//
//	go run ./scripts/kafka/ready -brokers 127.0.0.1:19092 -timeout 2s
//
// It exits 0 when the cluster is ready and 1 when the timeout passes first.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/certless/certless/broker/kafka"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:19092", "comma-separated bootstrap brokers")
	timeout := flag.Duration("timeout", 30*time.Second, "give up after this long")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := kafka.WaitReady(ctx, kafka.Config{Brokers: strings.Split(*brokers, ","), ClientID: "certless-ready"}); err != nil {
		fmt.Fprintln(os.Stderr, "kafka not ready:", err)
		os.Exit(1)
	}
}
