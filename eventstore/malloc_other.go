//go:build !cgo || !linux

package eventstore

// tuneMalloc does nothing without cgo (pebble then allocates in the Go
// heap) or off Linux. See malloc_cgo.go.
func tuneMalloc(func(string) string) bool { return false }

func glibcMalloc() bool { return false }
