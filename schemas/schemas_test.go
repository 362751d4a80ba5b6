package schemas

import (
	"errors"
	"testing"
)

func TestEmbeddedSchemasCompile(t *testing.T) {
	s, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Names()) == 0 {
		t.Fatal("no schemas embedded")
	}
}

func TestValidationErrorNamesField(t *testing.T) {
	doc := []byte(`{"data_dir":"x","kafka":{"brokers":["nohost"],"topic_prefix":""},"store":{"dsn":"a"},"http":{"addr":":1"},"log":{}}`)
	err := Validate("config.v1", doc)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	if ve.Pointer != "/kafka/brokers/0" {
		t.Fatalf("pointer = %q, want /kafka/brokers/0 (%v)", ve.Pointer, err)
	}
	missing := []byte(`{"kafka":{"brokers":[],"topic_prefix":""},"store":{"dsn":"a"},"http":{"addr":":1"},"log":{}}`)
	err = Validate("config.v1", missing)
	if !errors.As(err, &ve) || ve.Pointer != "/data_dir" {
		t.Fatalf("missing field: got %v", err)
	}
}

func TestUnknownSchema(t *testing.T) {
	if err := Validate("nope", []byte(`{}`)); !errors.Is(err, ErrUnknownSchema) {
		t.Fatalf("got %v", err)
	}
}
