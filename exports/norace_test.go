//go:build !race

package exports_test

const raceEnabled = false
