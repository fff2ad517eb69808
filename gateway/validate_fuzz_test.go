package gateway

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/money"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// FuzzParseDecimal checks that parseDecimal never panics, refuses with a
// FieldError, and that an accepted decimal round-trips exactly: its canonical
// text parses to the same value, is canonical itself, is never in exponent
// notation, and keeps the sender's digits when they were written plainly.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"12.3400", "+1", "-0.00", " 7 ", "1.5E-7", "1e64", "1e65", "1E-64", "-2.5e+3",
		"0.1", ".5", "5.", "1,000", "NaN", "Inf", "0x10", "1e", "--1", "1e99999", "٣", "1_000", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		canon, d, err := parseDecimal("amount", s)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "amount" {
				t.Fatalf("refusal of %q is not a FieldError for amount: %v", s, err)
			}
			return
		}
		if strings.ContainsAny(canon, "eE+ \t\n") {
			t.Fatalf("canonical text %q of %q is not plain", canon, s)
		}
		back, err := money.Parse(canon)
		if err != nil {
			t.Fatalf("canonical text %q of %q does not parse: %v", canon, s, err)
		}
		if !back.Equal(d) {
			t.Fatalf("%q: canonical text %q is %s, parsed value %s", s, canon, back, d)
		}
		exact, err := decimal.NewFromString(strings.TrimSpace(s))
		if err != nil || !exact.Equal(d) {
			t.Fatalf("%q parsed to %s, the decimal library reads %s (%v)", s, d, exact, err)
		}
		again, d2, err := parseDecimal("amount", canon)
		if err != nil || again != canon || !d2.Equal(d) {
			t.Fatalf("canonical text %q is not stable: %q, %s, %v", canon, again, d2, err)
		}
		if plain := strings.TrimSpace(s); !strings.ContainsAny(plain, "eE") && canon != strings.TrimPrefix(plain, "+") {
			t.Fatalf("plain %q became %q: the sender's digits must stay", s, canon)
		}
	})
}

// fuzzTimestamp maps fuzzed seconds to a timestamp; nil for 0 (absent), and
// out-of-range seconds stay out of range (CheckValid refuses them).
func fuzzTimestamp(sec int64) *timestamppb.Timestamp {
	if sec == 0 {
		return nil
	}
	return &timestamppb.Timestamp{Seconds: sec}
}

// checkAcceptedBody is what any accepted pushed body must satisfy: it
// encodes (valid UTF-8 everywhere, as the log's marshalling requires) and
// its occurred_at is a valid timestamp.
func checkAcceptedBody(t *testing.T, body proto.Message, occurred *timestamppb.Timestamp) {
	t.Helper()
	if _, err := proto.Marshal(body); err != nil {
		t.Fatalf("accepted body does not encode: %v", err)
	}
	if err := occurred.CheckValid(); err != nil {
		t.Fatalf("accepted body has occurred_at %v: %v", occurred, err)
	}
}

func requireAcceptedText(t *testing.T, name, v string, required bool) {
	t.Helper()
	if !utf8.ValidString(v) || len(v) > maxIDLen || (required && strings.TrimSpace(v) == "") {
		t.Fatalf("accepted %s %q", name, v)
	}
}

// FuzzValidateUsage checks RecordUsage's validation on arbitrary bodies: it
// never panics, and an accepted body has valid ids, a canonical quantity that
// round-trips, a period whose start is before its end, and attributes sorted
// by unique key.
func FuzzValidateUsage(f *testing.F) {
	start := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC).Unix()
	f.Add("aws", "i-123", "cpu_hours", "123456789012", "h", "1.5E-7", start, start+3600, "team", "web", "env", "prod")
	f.Add("aws", "i-123", "cpu_hours", "", "", "12.3400", start, start, "k", "v", "k", "w")
	f.Add(" ", "r", "m", "a\x00", "u", "1,5", int64(-62135596801), start, "", "", "b", "\xff")
	f.Fuzz(func(t *testing.T, provider, resource, metric, account, unit, quantity string,
		from, to int64, k1, v1, k2, v2 string) {
		u := &tallyv1.UsageRecorded{
			Provider: provider, ResourceId: resource, Metric: metric, BillingAccountId: account, Unit: unit,
			Quantity: quantity, PeriodStart: fuzzTimestamp(from), PeriodEnd: fuzzTimestamp(to),
			Attributes: []*tallyv1.KeyValue{{Key: k2, Value: v2}, {Key: k1, Value: v1}},
		}
		occurred, err := validateUsage("usage", u)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "usage") {
				t.Fatalf("refusal is not a FieldError under usage: %v", err)
			}
			return
		}
		checkAcceptedBody(t, u, occurred)
		requireAcceptedText(t, "provider", provider, true)
		requireAcceptedText(t, "resource_id", resource, true)
		requireAcceptedText(t, "metric", metric, true)
		requireAcceptedText(t, "billing_account_id", account, false)
		requireAcceptedText(t, "unit", unit, false)
		q, err := money.Parse(u.GetQuantity())
		if err != nil || strings.ContainsAny(u.GetQuantity(), "eE") {
			t.Fatalf("quantity %q became %q: %v", quantity, u.GetQuantity(), err)
		}
		if want := decimal.RequireFromString(strings.TrimSpace(quantity)); !q.Equal(want) {
			t.Fatalf("quantity %q became %s", quantity, q)
		}
		if !u.GetPeriodStart().AsTime().Before(u.GetPeriodEnd().AsTime()) {
			t.Fatalf("accepted period %v .. %v", u.GetPeriodStart(), u.GetPeriodEnd())
		}
		keys := []string{u.GetAttributes()[0].GetKey(), u.GetAttributes()[1].GetKey()}
		if !slices.IsSorted(keys) || keys[0] == keys[1] || keys[0] == "" {
			t.Fatalf("accepted attributes keyed %q", keys)
		}
	})
}

// FuzzValidateInvoice checks RecordInvoice's validation on arbitrary bodies:
// it never panics, and an accepted invoice has an exact canonical amount, an
// upper-case ISO 4217 currency and a valid bill scope.
func FuzzValidateInvoice(f *testing.F) {
	start := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC).Unix()
	end := time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC).Unix()
	f.Add("INV-1", "aws", "123456789012", start, end, "1234.50", "usd", end+86400)
	f.Add("INV-2", "gcp", "billing-1", end, start, "-3e2", "EUR", end)
	f.Add("", "aws", "a", start, end, "1", "XXX", int64(0))
	f.Add("INV-3", "aws", "a", start, end, "1e-65", "€", int64(253402300800))
	f.Fuzz(func(t *testing.T, id, provider, account string, from, to int64, amount, currency string, issued int64) {
		inv := &tallyv1.InvoiceRecorded{
			InvoiceId: id, Amount: amount, Currency: currency, IssuedAt: fuzzTimestamp(issued),
			Scope: &tallyv1.BillScope{
				Provider: provider, BillingAccountId: account,
				BillingPeriodStart: fuzzTimestamp(from), BillingPeriodEnd: fuzzTimestamp(to),
			},
		}
		occurred, err := validateInvoice("invoice", inv)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "invoice") {
				t.Fatalf("refusal is not a FieldError under invoice: %v", err)
			}
			return
		}
		checkAcceptedBody(t, inv, occurred)
		requireAcceptedText(t, "invoice_id", id, true)
		requireAcceptedText(t, "scope.provider", provider, true)
		requireAcceptedText(t, "scope.billing_account_id", account, true)
		a, err := money.Parse(inv.GetAmount())
		if err != nil || !a.Equal(decimal.RequireFromString(strings.TrimSpace(amount))) {
			t.Fatalf("amount %q became %q (%v)", amount, inv.GetAmount(), err)
		}
		if c := inv.GetCurrency(); c != strings.ToUpper(currency) || len(c) != 3 {
			t.Fatalf("currency %q became %q", currency, c)
		}
		s := inv.GetScope()
		if !s.GetBillingPeriodStart().AsTime().Before(s.GetBillingPeriodEnd().AsTime()) {
			t.Fatalf("accepted bill period %v .. %v", s.GetBillingPeriodStart(), s.GetBillingPeriodEnd())
		}
	})
}
