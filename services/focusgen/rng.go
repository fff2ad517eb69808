package focusgen

// rng is SplitMix64. The generator owns its random numbers instead of using
// math/rand so that the output bytes stay identical across Go releases:
// golden files and "same seed, same bill" tests must not break on upgrade.
type rng struct{ s uint64 }

// Streams keep the draws for different purposes independent, so that, for
// example, adding a column draw to resources does not shift every row.
const (
	streamResource uint64 = iota + 1
	streamSlot
	streamRevision
	streamRestate
)

// newRNG derives an independent generator for (seed, stream, index).
func newRNG(seed, stream, index uint64) *rng {
	return &rng{s: mix(seed ^ mix(stream<<56^index))}
}

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix(r.s)
}

func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a number in [0, n). The modulo bias (below 2^-50 for the n
// used here) does not matter for test data.
func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

// chance reports true with probability perMille/1000.
func (r *rng) chance(perMille int) bool { return r.intn(1000) < perMille }

func pick[T any](r *rng, xs []T) T { return xs[r.intn(len(xs))] }
