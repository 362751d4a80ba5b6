package broker

import "strings"

// Topics names the Kafka topics of a deployment:
//
//	<prefix><agency>.requests   signed requests from the agency
//	<prefix><agency>.receipts   signed receipts to the agency
//	<prefix>certless.deadletter messages whose sender was not authenticated
//	<prefix><owner>.disputes    disputes forwarded to a police data owner
//	<prefix><agency>.batches    periodic-exchange batches to the agency
type Topics struct {
	Prefix string
}

// Requests is the request topic of agency.
func (t Topics) Requests(agency string) string { return t.Prefix + agency + ".requests" }

// Receipts is the receipt topic of agency.
func (t Topics) Receipts(agency string) string { return t.Prefix + agency + ".receipts" }

// Disputes is the topic disputes are forwarded to the data owner on.
func (t Topics) Disputes(owner string) string { return t.Prefix + owner + ".disputes" }

// Batches is the topic periodic-exchange batches reach agency on.
func (t Topics) Batches(agency string) string { return t.Prefix + agency + ".batches" }

// DeadLetter is the dead-letter topic.
func (t Topics) DeadLetter() string { return t.Prefix + "certless.deadletter" }

// AgencyOfRequests returns the agency whose request topic is topic.
func (t Topics) AgencyOfRequests(topic string) (string, bool) {
	s, ok := strings.CutPrefix(topic, t.Prefix)
	if !ok {
		return "", false
	}
	a, ok := strings.CutSuffix(s, ".requests")
	return a, ok && a != ""
}
