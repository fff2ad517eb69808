//go:build race

package main

// raceEnabled: the test binary is built with -race, so the tally binary it
// builds is too (reusing the same compiled packages, and checking the
// binary for races as well).
const raceEnabled = true
