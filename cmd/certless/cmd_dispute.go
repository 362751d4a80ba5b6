package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/feedback"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/schemas"
)

func newDisputeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dispute",
		Short: "Disputes of answers, for the police data owner: list, show, resolve",
		Long: `An agency disputes an answer with a signed dispute message on its requests
topic; the broker forwards it to the police data owner whose agreement the
answer rests on (its <owner>.disputes topic) with a deadline of the
agreement's working days (dispute_working_days, default 5; China's public
holidays skipped). The data owner answers here: confirmed (the record
stands) or corrected (the record was fixed), signed with its key from the
keys folder. Every step is stored, logged in the transparency log and sent
to the agency as a signed dispute_status notice; the agency's
acknowledgement of the resolution closes the dispute.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(disputeListCmd(g), disputeShowCmd(g), disputeResolveCmd(g))
	return cmd
}

func openFeedback(ctx context.Context, g *globals) (*feedback.Store, string, error) {
	cfg, err := g.loadConfig(os.Getenv)
	if err != nil {
		return nil, "", err
	}
	s, err := feedback.Open(ctx, cfg.Store.DSN)
	return s, cfg.KeysDir, err
}

func disputeListCmd(g *globals) *cobra.Command {
	var f feedback.Filter
	var overdue, asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--owner O] [--agency A] [--status S] [--overdue] [--json]",
		Short: "List disputes, oldest first; --overdue only those past their deadline unanswered",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, err := openFeedback(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer s.Close()
			now := time.Now()
			if overdue {
				f.OverdueAt = now
			}
			ds, err := s.List(cmd.Context(), f)
			if err != nil {
				return err
			}
			if asJSON {
				return writeAgencyJSON(g.stdout, ds)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "id\tagency\towner\tstatus\tdue\tfields\t")
			for _, d := range ds {
				due := d.Due.In(policies.Beijing).Format("2006-01-02 15:04")
				if d.Overdue(now) {
					due += " OVERDUE"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", d.ID, d.Agency, d.Owner, d.Status, due, strings.Join(d.Fields, ","))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "%d disputes\n", len(ds))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Owner, "owner", "", "only disputes with this data owner")
	fl.StringVar(&f.Agency, "agency", "", "only disputes of this agency")
	fl.StringVar(&f.Status, "status", "", "only disputes in this status: open, forwarded, confirmed, corrected, closed")
	fl.BoolVar(&overdue, "overdue", false, "only disputes whose first answer is late now")
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func disputeShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Print a dispute with every step (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, _, err := openFeedback(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer s.Close()
			d, ok, err := s.Dispute(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no dispute %s", args[0])
			}
			evs, err := s.Events(cmd.Context(), d.ID)
			if err != nil {
				return err
			}
			return writeAgencyJSON(g.stdout, struct {
				feedback.Dispute
				Overdue bool             `json:"overdue"`
				Steps   []feedback.Event `json:"steps"`
			}{d, d.Overdue(time.Now()), evs})
		},
	}
}

func disputeResolveCmd(g *globals) *cobra.Command {
	var outcome, note, as, correctedFile string
	cmd := &cobra.Command{
		Use:   "resolve ID --outcome confirmed|corrected --note TEXT [--as OWNER]",
		Short: "Answer a dispute as its data owner, signed with the owner's key; the broker tells the agency",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if outcome != schemas.DisputeConfirmed && outcome != schemas.DisputeCorrected {
				return usagef("--outcome must be confirmed or corrected")
			}
			if strings.TrimSpace(note) == "" {
				return usagef("--note is required: what was checked, and what was corrected")
			}
			var corrected json.RawMessage
			if outcome == schemas.DisputeCorrected && correctedFile == "" {
				return usagef("--outcome corrected needs --corrected-answer FILE: the answer as the corrected record gives it, minimised to the agreed fields")
			}
			if correctedFile != "" {
				if outcome != schemas.DisputeCorrected {
					return usagef("--corrected-answer goes with --outcome corrected")
				}
				b, err := os.ReadFile(correctedFile)
				if err != nil {
					return err
				}
				corrected = b
			}
			ctx := cmd.Context()
			s, keysDir, err := openFeedback(ctx, g)
			if err != nil {
				return err
			}
			defer s.Close()
			r, err := resolveDispute(ctx, s, keysDir, args[0], outcome, note, corrected, as, time.Now())
			if err != nil {
				return err
			}
			if r.event.Seq == 0 {
				fmt.Fprintf(g.stdout, "dispute %s is already %s: nothing recorded\n", r.dispute.ID, outcome)
				return nil
			}
			fmt.Fprintf(g.stdout, "dispute %s %s by %s (resolution %s, signed %s); a running broker tells %s within seconds\n",
				r.dispute.ID, outcome, r.dispute.Owner, r.ref.ID, r.kid, r.dispute.Agency)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&outcome, "outcome", "", "confirmed (the record stands) or corrected (the record was fixed)")
	fl.StringVar(&note, "note", "", "the explanation the agency receives")
	fl.StringVar(&as, "as", "", "the data owner answering (default: the dispute's)")
	fl.StringVar(&correctedFile, "corrected-answer", "", "a JSON file with the corrected answer, minimised to the agreed fields")
	return cmd
}

// resolution is what resolveDispute recorded.
type resolution struct {
	dispute feedback.Dispute
	event   feedback.Event // Seq 0 when the dispute already had the outcome
	ref     schemas.MessageRef
	kid     string
}

// resolveDispute answers dispute id as its data owner (as, or the
// dispute's), signed with the owner's key from keysDir: the signed
// dispute_resolution is stored with the step; a running broker's Notifier
// tells the agency (and, when corrected, revokes the receipts).
func resolveDispute(ctx context.Context, s *feedback.Store, keysDir, id, outcome, note string, corrected json.RawMessage, as string, at time.Time) (resolution, error) {
	d, ok, err := s.Dispute(ctx, id)
	if err != nil {
		return resolution{}, err
	}
	if !ok {
		return resolution{}, fmt.Errorf("no dispute %s", id)
	}
	owner := as
	if owner == "" {
		owner = d.Owner
	}
	if owner != d.Owner {
		return resolution{}, fmt.Errorf("dispute %s is with %s, not %s", d.ID, d.Owner, owner)
	}
	now := at.UTC().Truncate(time.Second)
	key, err := ownerKey(keysDir, owner, now)
	if err != nil {
		return resolution{}, fmt.Errorf("signing key of %s: %w", owner, err)
	}
	body, err := json.Marshal(schemas.DisputeResolution{
		Dispute: schemas.MessageRef{ID: d.ID, Digest: d.Digest}, Receipt: d.Receipt,
		Outcome: outcome, Explanation: note, CorrectedAnswer: corrected, ResolvedAt: &now,
	})
	if err != nil {
		return resolution{}, err
	}
	p := envelope.Payload{Type: schemas.TypeDisputeResolution, ID: ulid.Make().String(), Agency: owner,
		IssuedAt: now, ExpiresAt: now.Add(90 * 24 * time.Hour), Purpose: envelope.Purpose{Basis: "dispute", CaseRef: d.ID}, Body: body}
	doc, err := json.Marshal(p)
	if err != nil {
		return resolution{}, err
	}
	if err := schemas.Validate(schemas.TypeDisputeResolution+".v1", doc); err != nil {
		return resolution{}, fmt.Errorf("resolution: %w", err)
	}
	jws, err := envelope.Sign(key, p)
	if err != nil {
		return resolution{}, err
	}
	ref := schemas.MessageRef{ID: p.ID, Digest: envelope.DigestOf(jws)}
	// The step at full precision: the receipts decided before it are the
	// ones a correction revokes.
	ev, err := s.Transition(ctx, d.ID, []string{schemas.DisputeOpen, schemas.DisputeForwarded}, outcome, owner, note, at,
		func(x *feedback.Dispute) { x.Resolution, x.ResolutionRef = string(jws), ref })
	if err != nil {
		return resolution{}, err
	}
	return resolution{dispute: d, event: ev, ref: ref, kid: key.KID()}, nil
}
