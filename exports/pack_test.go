package exports_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/exports"
	"github.com/tally-ledger/tally/projections/closepkg"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

func ruleEvent(tenant, id string, version uint32, from string, to string) *tallyv1.Envelope {
	r := &tallyv1.AllocationRuleSet{RuleId: id, Version: version, Priority: 10,
		EffectiveFrom: timestamppb.New(month(from)), Split: tallyv1.SplitKind_SPLIT_KIND_DIRECT,
		Match:  &tallyv1.AllocationMatch{Provider: "AWS"},
		Shares: []*tallyv1.CostCenterShare{{CostCenter: "web"}}, Description: "<web & co>"}
	if to != "" {
		r.EffectiveTo = timestamppb.New(month(to))
	}
	key := "allocation_rule_set/" + id + "/" + string(rune('0'+version))
	return &tallyv1.Envelope{EventId: eventstore.DeterministicID(tenant, key), IdempotencyKey: key,
		Actor: &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_USER, Id: "alice"},
		Body:  &tallyv1.Envelope_AllocationRuleSet{AllocationRuleSet: r}}
}

func retireEvent(tenant, id, to string) *tallyv1.Envelope {
	key := "allocation_rule_retired/" + id
	return &tallyv1.Envelope{EventId: eventstore.DeterministicID(tenant, key), IdempotencyKey: key,
		Actor: &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_USER, Id: "bob"},
		Body: &tallyv1.Envelope_AllocationRuleRetired{AllocationRuleRetired: &tallyv1.AllocationRuleRetired{
			RuleId: id, EffectiveTo: timestamppb.New(month(to)), Reason: "reorg"}}}
}

// unzip reads every file of a ZIP.
func unzip(t *testing.T, b []byte) (map[string][]byte, []string) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	files := map[string][]byte{}
	var names []string
	for _, f := range zr.File {
		rc, err := f.Open()
		require.NoError(t, err)
		data, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		files[f.Name] = data
		names = append(names, f.Name)
	}
	return files, names
}

// rezip writes files (in names' order) as a new ZIP, with edit applied to each.
func rezip(t *testing.T, files map[string][]byte, names []string, edit func(name string, data []byte) []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, n := range names {
		data := edit(n, files[n])
		if data == nil {
			continue
		}
		w, err := zw.Create(n)
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return b.Bytes()
}

func TestCompliancePack(t *testing.T) {
	e := newEnv(t)
	e.ingestFile(t, "a", samplePath, true)
	_, err := e.store.Append(ctxT(t), "a", []*tallyv1.Envelope{
		ruleEvent("a", "web", 1, "2024-01", ""),
		ruleEvent("a", "web", 2, "2024-09", ""),
		ruleEvent("a", "old", 1, "2023-01", "2024-09"),  // ended before September
		ruleEvent("a", "later", 1, "2024-10", ""),       // starts after
		ruleEvent("a", "retired", 1, "2024-01", ""),     // retired mid-September
		retireEvent("a", "retired", "2024-09"),          // from September 1st: not in force
		ruleEvent("a", "back", 1, "2024-01", "2025-01"), // retired, then a new version
		retireEvent("a", "back", "2024-08"),
		ruleEvent("a", "back", 2, "2024-09", ""),
	})
	require.NoError(t, err)
	e.catchUp(t)
	head, err := e.store.Head(ctxT(t), "a")
	require.NoError(t, err)

	savings := "action_id,realized\nx,1.00\n"
	now := time.Date(2024, 10, 5, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	m, err := exports.WritePack(ctxT(t), &b, e.pool, e.store, exports.Pack{Tenant: "a", Period: "2024-09", CreatedBy: "user:carol", Now: now,
		Sections: []exports.Section{{Name: "savings.csv", Write: func(_ context.Context, w io.Writer) error {
			_, err := io.WriteString(w, savings)
			return err
		}}}})
	require.NoError(t, err)

	files, names := unzip(t, b.Bytes())
	require.Equal(t, []string{"chain-head.json", "checkpoints.json", "close-package.json", "close-package.csv", "focus.csv",
		"rules.json", "savings.csv", "manifest.json"}, names)

	// Every manifest digest matches its file, hashed here independently.
	var manifest exports.Manifest
	require.NoError(t, json.Unmarshal(files["manifest.json"], &manifest))
	require.Equal(t, *m, manifest)
	require.Len(t, manifest.Files, len(names)-1)
	for _, d := range manifest.Files {
		sum := sha256.Sum256(files[d.Name])
		require.Equal(t, hex.EncodeToString(sum[:]), d.SHA256, d.Name)
		require.EqualValues(t, len(files[d.Name]), d.Size, d.Name)
	}
	require.Equal(t, exports.PackFormat, manifest.Format)
	require.Equal(t, "a", manifest.Tenant)
	require.Equal(t, "2024-09", manifest.Period)
	require.Equal(t, "user:carol", manifest.CreatedBy)
	require.Equal(t, now, manifest.CreatedAt)
	wantHead := exports.ChainHead{Tenant: "a", TenantSeq: head.Seq, Hash: hex.EncodeToString(head.Hash[:]), StreamSeq: head.StreamSeq}
	require.Equal(t, wantHead, manifest.ChainHead)
	var chainHead exports.ChainHead
	require.NoError(t, json.Unmarshal(files["chain-head.json"], &chainHead))
	require.Equal(t, wantHead, chainHead)

	vm, err := exports.VerifyPack(bytes.NewReader(b.Bytes()), int64(b.Len()))
	require.NoError(t, err)
	require.Equal(t, m, vm)

	// The files are what their writers write.
	var focusCSV bytes.Buffer
	_, err = exports.WriteFOCUSCSV(ctxT(t), &focusCSV, e.source(), exports.Range{Tenant: "a", From: month("2024-09"), To: month("2024-10")})
	require.NoError(t, err)
	require.Equal(t, focusCSV.String(), string(files["focus.csv"]))
	pkg, err := closepkg.NewQueries(e.pool).Package(ctxT(t), "a", "2024-09", "", closepkg.Options{})
	require.NoError(t, err)
	var pj, pc bytes.Buffer
	require.NoError(t, closepkg.WriteJSON(&pj, pkg))
	require.NoError(t, closepkg.WriteCSV(&pc, pkg))
	require.Equal(t, pj.String(), string(files["close-package.json"]))
	require.Equal(t, pc.String(), string(files["close-package.csv"]))
	require.Equal(t, savings, string(files["savings.csv"]))

	var cps []exports.Checkpoint
	require.NoError(t, json.Unmarshal(files["checkpoints.json"], &cps))
	byName := map[string]uint64{}
	for _, c := range cps {
		byName[c.Name] = c.LastSeq
	}
	require.Contains(t, byName, "ledger")
	require.Contains(t, byName, "closepkg")
	require.GreaterOrEqual(t, byName["ledger"], head.StreamSeq, "the ledger had folded up to the chain head")

	var rules exports.Rules
	require.NoError(t, json.Unmarshal(files["rules.json"], &rules))
	var got []string
	for _, r := range rules.Rules {
		got = append(got, r.RuleID+"@"+string(rune('0'+r.Version)))
	}
	require.Equal(t, []string{"back@2", "web@1", "web@2"}, got)
	require.Equal(t, head.Seq, rules.AsOfTenantSeq)
	require.Len(t, rules.Retirements, 1, "the retirement of back, a rule in the pack")
	require.Equal(t, uint32(1), rules.Retirements[0].UpToVersion)
	require.Equal(t, "user:alice", rules.Rules[0].Actor)
	require.Contains(t, string(rules.Rules[1].Rule), `"description": "<web & co>"`, "the rule's body, unescaped")
	require.Contains(t, string(files["rules.json"]), `"in_force_to": null`)

	t.Run("tampered", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			edit func(name string, data []byte) []byte
			want string
		}{
			{"a changed byte", func(n string, d []byte) []byte {
				if n == "focus.csv" {
					d = bytes.Replace(d, []byte("USD"), []byte("EUR"), 1)
				}
				return d
			}, "focus.csv: sha256"},
			{"a removed file", func(n string, d []byte) []byte {
				if n == "rules.json" {
					return nil
				}
				return d
			}, "rules.json: 0 copies"},
			{"an edited manifest", func(n string, d []byte) []byte {
				if n == "manifest.json" {
					return bytes.Replace(d, []byte(`"size": `), []byte(`"size": 1`), 1)
				}
				return d
			}, "chain-head.json:"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				z := rezip(t, files, names, tc.edit)
				_, err := exports.VerifyPack(bytes.NewReader(z), int64(len(z)))
				require.ErrorIs(t, err, exports.ErrPackMismatch)
				require.ErrorContains(t, err, tc.want)
			})
		}
		// A file the manifest does not list.
		extra := append(append([]string{}, names...), "extra.csv")
		withExtra := map[string][]byte{"extra.csv": []byte("x\n")}
		for k, v := range files {
			withExtra[k] = v
		}
		z := rezip(t, withExtra, extra, func(_ string, d []byte) []byte { return d })
		_, err := exports.VerifyPack(bytes.NewReader(z), int64(len(z)))
		var pe *exports.PackError
		require.True(t, errors.As(err, &pe), "%v", err)
		require.Equal(t, []string{"extra.csv is not in the manifest"}, pe.Problems)
		// Not a ZIP at all.
		_, err = exports.VerifyPack(strings.NewReader("nope"), 4)
		require.ErrorIs(t, err, exports.ErrPackMismatch)
	})
}

func TestCompliancePackBadRequests(t *testing.T) {
	e := newEnv(t)
	e.catchUp(t)
	w := func(context.Context, io.Writer) error { return nil }
	for _, tc := range []struct {
		name string
		p    exports.Pack
		want string
	}{
		{"no tenant", exports.Pack{Period: "2024-09"}, "tenant"},
		{"bad period", exports.Pack{Tenant: "a", Period: "September"}, "period"},
		{"section named as a built-in file", exports.Pack{Tenant: "a", Period: "2024-09", Sections: []exports.Section{{Name: "focus.csv", Write: w}}}, "sections[0]"},
		{"section path", exports.Pack{Tenant: "a", Period: "2024-09", Sections: []exports.Section{{Name: "../x.csv", Write: w}}}, "sections[0]"},
		{"twice", exports.Pack{Tenant: "a", Period: "2024-09", Sections: []exports.Section{{Name: "s.csv", Write: w}, {Name: "s.csv", Write: w}}}, "sections[1]"},
		{"no writer", exports.Pack{Tenant: "a", Period: "2024-09", Sections: []exports.Section{{Name: "s.csv"}}}, "sections[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			_, err := exports.WritePack(ctxT(t), &b, e.pool, e.store, tc.p)
			require.ErrorIs(t, err, exports.ErrInvalid)
			require.ErrorContains(t, err, tc.want)
			require.Zero(t, b.Len(), "nothing written")
		})
	}
	// An empty tenant still gets a complete, verifiable pack.
	var b bytes.Buffer
	m, err := exports.WritePack(ctxT(t), &b, e.pool, e.store, exports.Pack{Tenant: "empty", Period: "2024-09"})
	require.NoError(t, err)
	require.Zero(t, m.ChainHead.TenantSeq)
	require.Equal(t, strings.Repeat("0", 64), m.ChainHead.Hash)
	_, err = exports.VerifyPack(bytes.NewReader(b.Bytes()), int64(b.Len()))
	require.NoError(t, err)
}
