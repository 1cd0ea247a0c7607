// WeightsFormula.swift — the splitmix64 `weights_formula` of fixture cases whose weights are too
// big to ship (motion_encoder, motion_extractor): every floating-point state_dict entry k is
// value_j = a_k·(2u − 1) + b_k with u = splitmix64((k << 32) + j) >> 11 · 2^-53, computed in
// float64 (no FMA) and rounded to float32. Integer buffers and float constants (pe, idx_tensor)
// keep their constructor values. The case's `weights_keys` fixes k, the shapes and (a_k, b_k).
import Foundation
import NN
import Torch

public struct WeightsFormula: Sendable {
    public struct Entry: Sendable, Equatable {
        public let key: String
        public let shape: [Int]
        /// nil for entries kept at their constructor value (integer buffers, float constants).
        public let scale: Double?
        public let offset: Double?
        public var isGenerated: Bool { scale != nil }
    }

    /// state_dict() entries in order; the index of an entry is its k.
    public let entries: [Entry]
    /// Constructor values of integer buffers (BatchNorm num_batches_tracked).
    public let integerBuffers: [String: Int]

    public init(entries: [Entry], integerBuffers: [String: Int] = [:]) {
        self.entries = entries
        self.integerBuffers = integerBuffers
    }

    /// The rule the fixtures state for choosing (a, b), applied to a Swift module: running_var
    /// (0.25, 1), running_mean (0.1, 0), 1-D `.weight` of a module whose class name contains
    /// "Norm" (0.1, 1), any other parameter (0.05, 0); integer buffers and other float buffers are
    /// kept. Used to cross-check a module's layout against a case's list.
    public init(deriving module: Module) {
        let owners = Dictionary(module.namedModules().map { ($0.0, String(describing: type(of: $0.1))) },
                                uniquingKeysWith: { a, _ in a })
        let params = Set(module.namedParameters().map(\.0))
        var ints: [String: Int] = [:]
        entries = module.stateDict().map { key, t in
            let owner = key.split(separator: ".").dropLast().joined(separator: ".")
            let rule: (Double, Double)?
            if !t.dtype.isFloatingPoint {
                ints[key] = (try? t.itemInt()) ?? 0
                rule = nil
            } else if key.hasSuffix("running_var") {
                rule = (0.25, 1)
            } else if key.hasSuffix("running_mean") {
                rule = (0.1, 0)
            } else if !params.contains(key) {
                rule = nil
            } else if key.hasSuffix(".weight"), t.dim == 1, owners[owner]?.contains("Norm") == true {
                rule = (0.1, 1)
            } else {
                rule = (0.05, 0)
            }
            return Entry(key: key, shape: t.shape, scale: rule?.0, offset: rule?.1)
        }
        integerBuffers = ints
    }

    /// Reads `weights_keys` ([key, shape, a, b] rows) and `weights_integer_buffers` of a case.
    public init(case c: FixtureCase) throws {
        guard c.json["weights_formula"]?["kind"]?.string == "splitmix64" else {
            throw FixtureError("\(c.name): case.json has no splitmix64 weights_formula")
        }
        guard let rows = c.json["weights_keys"]?.array else { throw FixtureError("\(c.name): case.json has no weights_keys") }
        entries = try rows.enumerated().map { k, row in
            guard let r = row.array, r.count == 4, let key = r[0].string, let dims = r[1].array else {
                throw FixtureError("\(c.name): weights_keys[\(k)] is not [key, shape, a, b]")
            }
            return Entry(key: key, shape: dims.compactMap(\.int), scale: r[2].double, offset: r[3].double)
        }
        var ints: [String: Int] = [:]
        for (key, value) in c.json["weights_integer_buffers"]?.object ?? [:] { ints[key] = value.int ?? 0 }
        integerBuffers = ints
    }

    /// splitmix64's finaliser of (k << 32) + j.
    @inline(__always)
    public static func mix(_ k: Int, _ j: Int) -> UInt64 {
        var z = (UInt64(k) << 32) &+ UInt64(j)
        z = z &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The `count` float32 values of entry k: a·(2u − 1) + b with u = (mix >> 11)·2^-53.
    public static func values(index k: Int, count: Int, scale a: Double, offset b: Double) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buf, n in
            for j in 0..<count {
                let u = Double(mix(k, j) >> 11) * 0x1p-53
                // Two separate roundings (no fused multiply-add), as the reference computes it.
                let scaled = a * (2 * u - 1)
                buf[j] = Float(scaled + b)
            }
            n = count
        }
    }

    /// The entry's tensor (generated, or the integer buffer's value); nil for float constants.
    public func tensor(at k: Int) throws -> Tensor? {
        let e = entries[k]
        if let a = e.scale, let b = e.offset {
            return try Tensor(WeightsFormula.values(index: k, count: e.shape.reduce(1, *), scale: a, offset: b),
                              shape: e.shape)
        }
        if let v = integerBuffers[e.key] { return try Tensor.full(e.shape, Double(v), dtype: .int64) }
        return nil
    }

    /// Differences between this list and `other` (keys, order, shapes, rules), one line each.
    public func differences(from other: WeightsFormula) -> [String] {
        var out: [String] = []
        if entries.count != other.entries.count { out.append("\(entries.count) entries vs \(other.entries.count)") }
        for (k, (a, b)) in zip(entries, other.entries).enumerated() where a != b {
            out.append("k=\(k): \(a.key) \(a.shape) (\(a.scale.map { "\($0)" } ?? "-"), \(a.offset.map { "\($0)" } ?? "-"))"
                       + " vs \(b.key) \(b.shape) (\(b.scale.map { "\($0)" } ?? "-"), \(b.offset.map { "\($0)" } ?? "-"))")
        }
        return out
    }

    /// A state-dict source for `module`: generated entries, integer buffers, and the module's own
    /// current values for the kept float constants, so a strict load succeeds.
    public func source(for module: Module, name: String = "weights_formula") throws -> StateDictSource {
        let own = Dictionary(module.stateDict(), uniquingKeysWith: { a, _ in a })
        var constants: [String: Tensor] = [:]
        for e in entries where !e.isGenerated && integerBuffers[e.key] == nil {
            guard let t = own[e.key] else { throw FixtureError("\(name): constant \(e.key) is not in the module") }
            constants[e.key] = try t.detach().clone()
        }
        return FormulaSource(formula: self, constants: constants, sourceName: name)
    }
}

/// Generates each tensor when the loader asks for it, so the full state dict never sits in
/// memory twice.
struct FormulaSource: StateDictSource {
    let formula: WeightsFormula
    let constants: [String: Tensor]
    let sourceName: String
    private let index: [String: Int]

    init(formula: WeightsFormula, constants: [String: Tensor], sourceName: String) {
        self.formula = formula
        self.constants = constants
        self.sourceName = sourceName
        index = Dictionary(formula.entries.enumerated().map { ($0.element.key, $0.offset) }, uniquingKeysWith: { a, _ in a })
    }

    var keys: [String] { formula.entries.map(\.key) }

    func shape(of key: String) -> [Int]? { index[key].map { formula.entries[$0].shape } }

    func read(_ key: String, into tensor: Tensor) throws {
        guard let k = index[key] else { throw FixtureError("\(sourceName): no key \(key)") }
        if let t = try formula.tensor(at: k) ?? constants[key] {
            try tensor.copy_(t)
        } else {
            throw FixtureError("\(sourceName): no value for \(key)")
        }
    }
}

extension FixtureCase {
    /// The case's formula weights for `module`, after checking that the module's state dict has
    /// exactly the case's keys, order, shapes and (a, b) rules — a mismatch names the entries.
    public func formulaWeights(for module: Module) throws -> StateDictSource {
        let formula = try WeightsFormula(case: self)
        let diffs = WeightsFormula(deriving: module).differences(from: formula)
        if !diffs.isEmpty {
            throw FixtureError("\(name): module state dict (left) differs from weights_keys (right):\n  "
                               + diffs.prefix(20).joined(separator: "\n  "))
        }
        return try formula.source(for: module, name: "\(name)/weights_formula")
    }
}
