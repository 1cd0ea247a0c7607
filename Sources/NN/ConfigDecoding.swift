// ConfigDecoding.swift — strict decoding for configs (diffusers config.json, case.json configs,
// YAML training configs): unknown keys are errors that name the key path and suggest the
// closest known key; missing keys fall back to the reference defaults.
import Foundation

/// A coding key built from any string (for listing the keys a container actually holds).
public struct AnyCodingKey: CodingKey, Hashable {
    public var stringValue: String
    public var intValue: Int?
    public init(_ s: String) { stringValue = s; intValue = nil }
    public init?(stringValue: String) { self.init(stringValue) }
    public init?(intValue: Int) { stringValue = "\(intValue)"; self.intValue = intValue }
}

public struct UnknownConfigKeyError: Error, CustomStringConvertible {
    public let path: String
    public let key: String
    public let suggestion: String?
    public init(path: String, key: String, suggestion: String?) {
        self.path = path
        self.key = key
        self.suggestion = suggestion
    }
    public var description: String {
        let full = path.isEmpty ? key : "\(path).\(key)"
        return "unknown config key '\(full)'" + (suggestion.map { " (did you mean '\($0)'?)" } ?? "")
    }
}

extension Decoder {
    /// Throws for the first key not in `known`, naming its full path and the closest known key.
    /// Keys in `ignored` (e.g. diffusers' `_class_name`, `_diffusers_version`) are accepted.
    public func rejectUnknownKeys(_ known: [String], ignoring ignored: [String] = []) throws {
        let c = try container(keyedBy: AnyCodingKey.self)
        let allowed = Set(known + ignored)
        for key in c.allKeys.map(\.stringValue).sorted() where !allowed.contains(key) && !key.hasPrefix("_") {
            let path = codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            throw UnknownConfigKeyError(path: path, key: key, suggestion: closestKey(to: key, in: known))
        }
    }
}

/// The known key with the smallest edit distance, if reasonably close.
public func closestKey(to key: String, in known: [String]) -> String? {
    let scored = known.map { ($0, editDistance(key.lowercased(), $0.lowercased())) }
    guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
    return best.1 <= max(2, key.count / 3) ? best.0 : nil
}

public func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a), y = Array(b)
    if x.isEmpty { return y.count }
    if y.isEmpty { return x.count }
    var prev = Array(0...y.count), cur = [Int](repeating: 0, count: y.count + 1)
    for i in 1...x.count {
        cur[0] = i
        for j in 1...y.count {
            cur[j] = Swift.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[y.count]
}

extension KeyedDecodingContainer {
    /// The value, or `fallback` when the key is absent. An explicit null decodes as nil for
    /// optional types (so `"temb_channels": null` differs from a missing key).
    /// A null for a non-optional value means "the default" (YAML writes `key:` or `key: ""` as
    /// null in some emitters).
    public func value<T: Decodable>(_ key: Key, default fallback: T) throws -> T {
        guard contains(key) else { return fallback }
        if !(T.self is ExpressibleByNilLiteral.Type), try decodeNil(forKey: key) { return fallback }
        return try decode(T.self, forKey: key)
    }

    /// `value(key, default:)`, refused with the key's path when below zero.
    public func nonNegative<T: Comparable & Decodable & AdditiveArithmetic>(_ key: Key, default fallback: T) throws -> T {
        let v = try value(key, default: fallback)
        guard v >= T.zero else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "expected a value >= 0, got \(v)")
        }
        return v
    }

    /// `value(key, default:)`, refused with the key's path unless above zero.
    public func positive(_ key: Key, default fallback: Int) throws -> Int {
        let v = try value(key, default: fallback)
        guard v > 0 else { throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "expected a value > 0, got \(v)") }
        return v
    }
}

/// A JSON/YAML value of any shape, for configs whose parts are interpreted later.
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let d):
            if d.rounded() == d, Swift.abs(d) < 1e15 { try c.encode(Int(d)) } else { try c.encode(d) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    public var double: Double? { if case .number(let d) = self { return d } else { return nil } }
    public var int: Int? { double.map { Int($0) } }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var object: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }

    /// Decodes this value as `T` (through JSON).
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: JSONEncoder().encode(self))
    }
}
