package eventstore

// CatchUpScanned is how many log messages the store's catch-ups have folded
// into its id index so far.
func CatchUpScanned(s *Store) uint64 { return s.caughtUp.Load() }
