// SeededRandom.swift — a small deterministic random generator (SplitMix64) and stream derivation,
// so synthetic data and sampler draws depend only on (seed, step, index) — never on thread
// scheduling — and a resumed run sees exactly the same data.
import Foundation

public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A generator for a sub-stream named by integers, e.g. (seed, step, sample).
    public init(seed: UInt64, _ path: UInt64...) {
        var s = SeededRandom.mix(seed ^ 0x5DEE_CE66_D1CE_4E5B)
        for p in path { s = SeededRandom.mix(s ^ SeededRandom.mix(p &+ 0x9E37_79B9_7F4A_7C15)) }
        state = s
    }

    public mutating func next() -> UInt64 {
        state = state &+ 0x9E37_79B9_7F4A_7C15
        return SeededRandom.mix(state)
    }

    /// The SplitMix64 finaliser.
    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func unit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Double, _ hi: Double) -> Double {
        lo + (hi - lo) * unit()
    }

    /// Uniform integer in [0, n).
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0)
        return Int(next() % UInt64(n))
    }

    /// Standard normal (Box–Muller; one value per call keeps the stream simple).
    public mutating func normal() -> Double {
        let u1 = max(unit(), 1e-300), u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    /// A deterministic permutation of 0..<n (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n < 2 { return p }
        for i in stride(from: n - 1, to: 0, by: -1) {
            let j = below(i + 1)
            p.swapAt(i, j)
        }
        return p
    }
}

