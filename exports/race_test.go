//go:build race

package exports_test

// raceEnabled: the test binary is built with -race.
const raceEnabled = true
