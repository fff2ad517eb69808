package ledger

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// TestCopyBinaryMatchesTextInput writes values through the binary COPY writer and checks that
// PostgreSQL stored exactly what its text input gives for the same text: numerics (value and
// display scale), timestamps, tags.
func TestCopyBinaryMatchesTextInput(t *testing.T) {
	ctx := context.Background()
	pool, _ := pgtest.NewDB(t)
	_, err := pool.Exec(ctx, `CREATE TABLE nums (s text, n numeric);
		CREATE TABLE times (s text, ts timestamptz);
		CREATE TABLE tags (s text, doc jsonb)`)
	require.NoError(t, err)

	decimals := []string{"0", "-0", "+0", "-0.00", "0.000", "1", "-1", "7", "123.45", "123.4500", "-123.4500", "0.0001",
		"0.00010", ".5", "5.", "+7.25", "1e3", "1.5e3", "1.5E-3", "-2.5e+2", "12e1", "000123.000", "10000", "9999.9999",
		"99999999", "100000000", "1e-20", "-1e-100", "1e100", "0.00000000001", "1234567.1234567", "0e5", "0.0e-3",
		"123456789012345678901234567890.123456789012345678901234567890", "-98765432109876543210", "0.1e1", "5.e-1"}
	var c copyBinary
	for _, s := range decimals {
		c.row(2)
		c.text(s)
		require.NoError(t, c.decimal(s, false), s)
	}
	require.NoError(t, copyInto(ctx, pool, "nums", []string{"s", "n"}, &c))
	var bad []string
	rows, err := pool.Query(ctx, `SELECT s || ': ' || n::text || ' <> ' || s::numeric::text FROM nums
		WHERE n::text IS DISTINCT FROM s::numeric::text OR scale(n) IS DISTINCT FROM scale(s::numeric)`)
	require.NoError(t, err)
	bad, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, bad)
	var count int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM nums").Scan(&count))
	require.Equal(t, len(decimals), count)

	times := []time.Time{
		time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 999_999_999, time.UTC), // before PostgreSQL's epoch: truncated, not rounded
		time.Date(2000, 1, 1, 0, 0, 0, 1500, time.UTC),
		time.Unix(0, 0).UTC(),
		time.Date(2026, 3, 29, 1, 30, 0, 123_456_789, time.FixedZone("x", 3600)),
	}
	c = copyBinary{}
	for _, tm := range times {
		c.row(2)
		c.text(tm.UTC().Format("2006-01-02 15:04:05.999999Z07:00"))
		c.tsOrNull(timestamppb.New(tm))
	}
	c.row(2)
	c.null()
	c.tsOrNull(nil)
	require.NoError(t, copyInto(ctx, pool, "times", []string{"s", "ts"}, &c))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM times WHERE ts IS NOT DISTINCT FROM s::timestamptz`).Scan(&count))
	require.Equal(t, len(times)+1, count)

	tagSets := [][]*tallyv1.KeyValue{
		nil,
		{{Key: "team", Value: "a"}},
		{{Key: "b", Value: "2"}, {Key: "a", Value: "1"}, {Key: "b", Value: "3"}}, // a repeated key: the last wins
		{{Key: `q"uote`, Value: `back\slash`}, {Key: "nl", Value: "a\nb\tc\r\x01\x1f"}, {Key: "<&>", Value: "é ü 中 🙂"}},
		{{Key: "", Value: ""}},
	}
	c = copyBinary{}
	for _, tags := range tagSets {
		m := map[string]string{}
		for _, kv := range tags {
			m[kv.GetKey()] = kv.GetValue()
		}
		want, err := json.Marshal(m)
		require.NoError(t, err)
		c.row(2)
		c.text(string(want))
		c.jsonb(appendTagsJSON(nil, tags))
	}
	require.NoError(t, copyInto(ctx, pool, "tags", []string{"s", "doc"}, &c))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM tags WHERE doc = s::jsonb`).Scan(&count))
	require.Equal(t, len(tagSets), count)
}

func copyInto(ctx context.Context, pool interface {
	Begin(context.Context) (pgx.Tx, error)
}, table string, cols []string, c *copyBinary) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := copyBinaryInto(ctx, tx, pgx.Identifier{table}, cols, c); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func TestDecimalRefusesWhatIsNotADecimal(t *testing.T) {
	for _, s := range []string{"abc", "1e", "1e12345", "1.2.3", "--1", "1 ", " 1", "NaN", "Infinity", "0x10", "1,5"} {
		var c copyBinary
		c.row(1)
		before := len(c.buf)
		err := c.decimal(s, false)
		require.ErrorContains(t, err, "is not a decimal", s)
		require.Len(t, c.buf, before, "nothing written for %q", s)
	}
}
