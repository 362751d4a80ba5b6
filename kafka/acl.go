package kafka

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/certless/certless/fault"
)

// An agency on a secured cluster (SASL and an authorizer, e.g. KRaft's
// StandardAuthorizer) is a SCRAM-SHA-512 user whose ACLs allow exactly:
//
//	WRITE, DESCRIBE  on its requests topic   (LITERAL)
//	READ, DESCRIBE   on its receipts topic   (LITERAL)
//	READ             on consumer groups whose names start with its GroupPrefix (PREFIXED)
//
// and nothing else: no other topic, no other group, no cluster operation.
// The functions here are called as a cluster administrator (a super user,
// or a user allowed ALTER on the cluster for ACLs and ALTER_CONFIGS for
// SCRAM credentials).
//
// Whether a cluster is secured is decided from the configuration, not
// asked of the cluster: see [HasSecurity].

// SCRAMIterations is the PBKDF2 iteration count of the credentials
// [UpsertSCRAM] stores (Kafka's minimum for SCRAM-SHA-512 is 4096).
const SCRAMIterations = 8192

// Reason codes of the permanent errors of this file (see package fault).
const (
	ReasonNotAuthorized    = "kafka_not_authorized"    // the user may not do it: change ACLs or credentials, read a topic or group
	ReasonSecurityDisabled = "kafka_security_disabled" // the cluster has no authorizer
	ReasonConsumerClosed   = "kafka_consumer_closed"   // Fetch on a closed consumer
)

// AgencyAccess names what one agency may use on the cluster.
type AgencyAccess struct {
	// Principal is the agency's SASL user name (without "User:").
	Principal string
	// RequestsTopic is the topic the agency writes its requests to.
	RequestsTopic string
	// ReceiptsTopic is the topic the agency reads its receipts from.
	ReceiptsTopic string
	// GroupPrefix starts the name of every consumer group the agency may
	// use, e.g. "court-changchun.".
	GroupPrefix string
	// ReadTopics are further topics the principal may read, such as a
	// police data owner's <owner>.disputes.
	ReadTopics []string
}

func (a AgencyAccess) validate() error {
	if a.Principal == "" || a.RequestsTopic == "" || a.ReceiptsTopic == "" || a.GroupPrefix == "" {
		return fmt.Errorf("kafka: agency access needs a principal, both topics and a group prefix: %+v", a)
	}
	if strings.ContainsAny(a.Principal, ":,=") {
		return fmt.Errorf("kafka: principal %q: ':', ',' and '=' are not allowed in a user name", a.Principal)
	}
	return nil
}

// Bindings are the ACL entries a grants, in a fixed order.
func (a AgencyAccess) Bindings() []kafka.ACLEntry {
	principal := "User:" + a.Principal
	allow := func(rt kafka.ResourceType, name string, pt kafka.PatternType, op kafka.ACLOperationType) kafka.ACLEntry {
		return kafka.ACLEntry{
			ResourceType: rt, ResourceName: name, ResourcePatternType: pt,
			Principal: principal, Host: "*", Operation: op, PermissionType: kafka.ACLPermissionTypeAllow,
		}
	}
	out := []kafka.ACLEntry{
		allow(kafka.ResourceTypeTopic, a.RequestsTopic, kafka.PatternTypeLiteral, kafka.ACLOperationTypeWrite),
		allow(kafka.ResourceTypeTopic, a.RequestsTopic, kafka.PatternTypeLiteral, kafka.ACLOperationTypeDescribe),
		allow(kafka.ResourceTypeTopic, a.ReceiptsTopic, kafka.PatternTypeLiteral, kafka.ACLOperationTypeRead),
		allow(kafka.ResourceTypeTopic, a.ReceiptsTopic, kafka.PatternTypeLiteral, kafka.ACLOperationTypeDescribe),
		allow(kafka.ResourceTypeGroup, a.GroupPrefix, kafka.PatternTypePrefixed, kafka.ACLOperationTypeRead),
	}
	for _, t := range a.ReadTopics {
		out = append(out,
			allow(kafka.ResourceTypeTopic, t, kafka.PatternTypeLiteral, kafka.ACLOperationTypeRead),
			allow(kafka.ResourceTypeTopic, t, kafka.PatternTypeLiteral, kafka.ACLOperationTypeDescribe))
	}
	return out
}

// HasSecurity reports whether cfg reaches a cluster where agencies get
// SCRAM credentials and ACLs: it does when cfg authenticates with SASL.
// It is decided from the configuration alone (a cluster without an
// authorizer answers ACL requests with SECURITY_DISABLED, which
// [EnsureAgencyAccess] returns as a permanent error with reason
// [ReasonSecurityDisabled]).
func HasSecurity(cfg Config) bool { return cfg.SASL.Mechanism != "" }

// adminClient is a kafka-go client for cfg's admin requests; the caller
// calls done.
func adminClient(cfg Config) (*kafka.Client, func(), error) {
	tr, err := cfg.Transport()
	if err != nil {
		return nil, nil, err
	}
	return &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr, Timeout: 30 * time.Second}, tr.CloseIdleConnections, nil
}

// adminError wraps err from doing what on cfg's cluster with the broker
// addresses, classified permanent when retrying cannot help.
func adminError(cfg Config, what string, err error) error {
	err = fmt.Errorf("kafka: broker %s: %s: %w", strings.Join(cfg.Brokers, ","), what, err)
	switch {
	case errors.Is(err, kafka.ClusterAuthorizationFailed), errors.Is(err, kafka.TopicAuthorizationFailed),
		errors.Is(err, kafka.GroupAuthorizationFailed):
		return fault.Permanent(ReasonNotAuthorized, err)
	case errors.Is(err, kafka.SecurityDisabled):
		return fault.Permanent(ReasonSecurityDisabled, err)
	}
	return err
}

// DescribeAgencyACLs returns every ACL entry of principal (without
// "User:") on the cluster, whatever its resource.
func DescribeAgencyACLs(ctx context.Context, cfg Config, principal string) ([]kafka.ACLEntry, error) {
	c, done, err := adminClient(cfg)
	if err != nil {
		return nil, err
	}
	defer done()
	return describeACLs(ctx, cfg, c, principal)
}

func describeACLs(ctx context.Context, cfg Config, c *kafka.Client, principal string) ([]kafka.ACLEntry, error) {
	res, err := c.DescribeACLs(ctx, &kafka.DescribeACLsRequest{Filter: kafka.ACLFilter{
		ResourceTypeFilter:        kafka.ResourceTypeAny,
		ResourcePatternTypeFilter: kafka.PatternTypeAny,
		PrincipalFilter:           "User:" + principal,
		Operation:                 kafka.ACLOperationTypeAny,
		PermissionType:            kafka.ACLPermissionTypeAny,
	}})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		return nil, adminError(cfg, "describe ACLs of User:"+principal, err)
	}
	var out []kafka.ACLEntry
	for _, r := range res.Resources {
		for _, d := range r.ACLs {
			out = append(out, kafka.ACLEntry{
				ResourceType: r.ResourceType, ResourceName: r.ResourceName, ResourcePatternType: r.PatternType,
				Principal: d.Principal, Host: d.Host, Operation: d.Operation, PermissionType: d.PermissionType,
			})
		}
	}
	return out, nil
}

// EnsureAgencyAccess grants a's ACLs (see [AgencyAccess.Bindings]) on
// cfg's cluster. It is idempotent: it describes the principal's ACLs and
// creates only the missing bindings, so calling it again creates nothing.
// ACLs the principal has beyond a's are left alone. ACLs reach every
// broker through the cluster's metadata log, usually within a second.
func EnsureAgencyAccess(ctx context.Context, cfg Config, a AgencyAccess) error {
	if err := a.validate(); err != nil {
		return err
	}
	c, done, err := adminClient(cfg)
	if err != nil {
		return err
	}
	defer done()
	have, err := describeACLs(ctx, cfg, c, a.Principal)
	if err != nil {
		return err
	}
	seen := make(map[kafka.ACLEntry]bool, len(have))
	for _, e := range have {
		seen[e] = true
	}
	var missing []kafka.ACLEntry
	for _, b := range a.Bindings() {
		if !seen[b] {
			missing = append(missing, b)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	res, err := c.CreateACLs(ctx, &kafka.CreateACLsRequest{ACLs: missing})
	if err != nil {
		return adminError(cfg, "create ACLs of User:"+a.Principal, err)
	}
	var errs []error
	for i, e := range res.Errors {
		if e != nil && i < len(missing) {
			m := missing[i]
			errs = append(errs, adminError(cfg, fmt.Sprintf("create ACL %s %s on %s %s (%s)",
				m.PermissionType, m.Operation, m.ResourceType, m.ResourceName, m.ResourcePatternType), e))
		}
	}
	return errors.Join(errs...)
}

// RevokeAgencyAccess deletes exactly a's ACLs (see [AgencyAccess.Bindings])
// from cfg's cluster; other ACLs of the principal stay. Revoking ACLs that
// are not there is no error. The principal's credential stays, so it can
// still log in, but may use nothing.
func RevokeAgencyAccess(ctx context.Context, cfg Config, a AgencyAccess) error {
	if err := a.validate(); err != nil {
		return err
	}
	c, done, err := adminClient(cfg)
	if err != nil {
		return err
	}
	defer done()
	bs := a.Bindings()
	filters := make([]kafka.DeleteACLsFilter, len(bs))
	for i, b := range bs {
		filters[i] = kafka.DeleteACLsFilter{
			ResourceTypeFilter: b.ResourceType, ResourceNameFilter: b.ResourceName,
			ResourcePatternTypeFilter: b.ResourcePatternType, PrincipalFilter: b.Principal,
			HostFilter: b.Host, Operation: b.Operation, PermissionType: b.PermissionType,
		}
	}
	res, err := c.DeleteACLs(ctx, &kafka.DeleteACLsRequest{Filters: filters})
	if err != nil {
		return adminError(cfg, "delete ACLs of User:"+a.Principal, err)
	}
	var errs []error
	for _, r := range res.Results {
		if r.Error != nil {
			errs = append(errs, adminError(cfg, "delete ACLs of User:"+a.Principal, r.Error))
		}
		for _, m := range r.MatchingACLs {
			if m.Error != nil {
				errs = append(errs, adminError(cfg, fmt.Sprintf("delete ACL %s %s on %s %s", m.PermissionType, m.Operation, m.ResourceType, m.ResourceName), m.Error))
			}
		}
	}
	return errors.Join(errs...)
}

// UpsertSCRAM sets user's SCRAM-SHA-512 credential on cfg's cluster to
// password ([SCRAMIterations] iterations, a fresh random salt), creating
// the user or replacing its password. The password is never logged nor
// put in an error.
func UpsertSCRAM(ctx context.Context, cfg Config, user, password string) error {
	if user == "" || password == "" {
		return errors.New("kafka: SCRAM credential needs a user name and a password")
	}
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return err
	}
	salted, err := pbkdf2.Key(sha512.New, password, salt, SCRAMIterations, sha512.Size)
	if err != nil {
		return err
	}
	c, done, err := adminClient(cfg)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.AlterUserScramCredentials(ctx, &kafka.AlterUserScramCredentialsRequest{
		Upsertions: []kafka.UserScramCredentialsUpsertion{{
			Name: user, Mechanism: kafka.ScramMechanismSha512,
			Iterations: SCRAMIterations, Salt: salt, SaltedPassword: salted,
		}},
	})
	if err == nil {
		for _, r := range res.Results {
			if r.Error != nil {
				err = r.Error
			}
		}
	}
	if err != nil {
		return adminError(cfg, "set SCRAM-SHA-512 credential of "+user, err)
	}
	return nil
}

// HasSCRAM reports whether user has a SCRAM-SHA-512 credential on cfg's
// cluster.
func HasSCRAM(ctx context.Context, cfg Config, user string) (bool, error) {
	c, done, err := adminClient(cfg)
	if err != nil {
		return false, err
	}
	defer done()
	res, err := c.DescribeUserScramCredentials(ctx, &kafka.DescribeUserScramCredentialsRequest{
		Users: []kafka.UserScramCredentialsUser{{Name: user}},
	})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		return false, adminError(cfg, "describe SCRAM credentials of "+user, err)
	}
	for _, r := range res.Results {
		if r.Error != nil {
			if errors.Is(r.Error, kafka.ResourceNotFound) {
				return false, nil
			}
			return false, adminError(cfg, "describe SCRAM credentials of "+user, r.Error)
		}
		for _, ci := range r.CredentialInfos {
			if ci.Mechanism == kafka.ScramMechanismSha512 {
				return true, nil
			}
		}
	}
	return false, nil
}

// DeleteSCRAM removes user's SCRAM-SHA-512 credential from cfg's cluster;
// a user without one is no error.
func DeleteSCRAM(ctx context.Context, cfg Config, user string) error {
	c, done, err := adminClient(cfg)
	if err != nil {
		return err
	}
	defer done()
	res, err := c.AlterUserScramCredentials(ctx, &kafka.AlterUserScramCredentialsRequest{
		Deletions: []kafka.UserScramCredentialsDeletion{{Name: user, Mechanism: kafka.ScramMechanismSha512}},
	})
	if err == nil {
		for _, r := range res.Results {
			if r.Error != nil && !errors.Is(r.Error, kafka.ResourceNotFound) {
				err = r.Error
			}
		}
	}
	if err != nil {
		return adminError(cfg, "delete SCRAM-SHA-512 credential of "+user, err)
	}
	return nil
}
