package records

// rng is SplitMix64: tiny, fast, and fully specified here, so generated
// records never change with the Go version.
type rng struct{ s uint64 }

func newRNG(seed int64) *rng { return &rng{s: uint64(seed) ^ 0x6a09e667f3bcc909} }

func (r *rng) u64() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a value in [0, n); n must be > 0. The modulo bias is far
// below anything synthetic records care about.
func (r *rng) intn(n int) int { return int(r.u64() % uint64(n)) }

// between returns a value in [lo, hi].
func (r *rng) between(lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + r.intn(hi-lo+1)
}

// chance reports true with probability p.
func (r *rng) chance(p float64) bool { return float64(r.u64()>>11)/(1<<53) < p }

// pick returns a random element of s.
func pick[T any](r *rng, s []T) T { return s[r.intn(len(s))] }

// weighted returns an index drawn with the given cumulative weights.
func (r *rng) weighted(cum []int) int {
	x := r.intn(cum[len(cum)-1])
	lo, hi := 0, len(cum)-1
	for lo < hi {
		m := (lo + hi) / 2
		if x < cum[m] {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}
