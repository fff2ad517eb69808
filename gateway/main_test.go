package gateway_test

import (
	"testing"

	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
