// FixtureCase.swift — one golden-tensor case folder produced by the PyTorch reference:
// case.json (module, config, call, tolerance, notes), io.safetensors (in.* / out.*) and
// weights.safetensors or a weights_formula.
import Foundation
import NN
import Torch

public struct FixtureError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public final class FixtureCase {
    public let name: String
    public let directory: URL
    public let json: JSONValue
    public let io: SafeTensorsFile

    public init(directory: URL) throws {
        self.directory = directory
        name = directory.lastPathComponent
        let caseURL = directory.appendingPathComponent("case.json")
        do {
            json = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: caseURL))
        } catch {
            throw FixtureError("\(caseURL.path): cannot read case.json: \(error)")
        }
        io = try SafeTensorsFile(path: directory.appendingPathComponent("io.safetensors").path)
    }

    /// `module.class` (or the `module` string when it is one).
    public var moduleClass: String {
        json["module"]?["class"]?.string ?? json["module"]?.string ?? "<unknown>"
    }

    public var config: JSONValue { json["config"] ?? .object([:]) }

    /// Decodes the case's `config` into a model's Codable config (strict about unknown keys).
    public func config<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try config.decode(T.self)
        } catch {
            throw FixtureError("\(name): config does not decode as \(T.self): \(error)")
        }
    }

    /// A config section the case cannot run without (`config.<key>`), decoded as `T`; a missing or
    /// malformed section is an error naming the case and the key, never a crash.
    public func config<T: Decodable>(_ key: String, as type: T.Type) throws -> T {
        guard let v = config[key] else { throw FixtureError("\(name): case.json config has no '\(key)'") }
        do {
            return try v.decode(T.self)
        } catch {
            throw FixtureError("\(name): config.\(key) does not decode as \(T.self): \(error)")
        }
    }

    public var inputKeys: [String] { io.keys.filter { $0.hasPrefix("in.") } }
    public var outputKeys: [String] { io.keys.filter { $0.hasPrefix("out.") } }

    /// `in.<name>` (the prefix may be omitted), converted to the dtype the reference used when
    /// the case says it was an integer (timesteps are stored as float32 with integer values).
    public func input(_ name: String) throws -> Tensor {
        let key = name.hasPrefix("in.") ? name : "in.\(name)"
        guard io.entries[key] != nil else { throw FixtureError("\(self.name): io.safetensors has no \(key)") }
        let t = try io.tensor(key)
        if let dt = referenceDType(key), dt != t.dtype { return try t.to(dt) }
        return t
    }

    /// The inputs `<prefix>0`, `<prefix>1`, … (a case's per-block or per-step draws), in numeric order.
    public func numberedInputs(_ prefix: String) throws -> [Tensor] {
        let numbered = inputKeys.compactMap { key in
            key.hasPrefix(prefix) ? Int(key.dropFirst(prefix.count)).map { ($0, key) } : nil
        }
        return try numbered.sorted { $0.0 < $1.0 }.map { try input($0.1) }
    }

    public func hasInput(_ name: String) -> Bool { io.entries[name.hasPrefix("in.") ? name : "in.\(name)"] != nil }

    public func expected(_ key: String) throws -> Tensor { try io.tensor(key) }

    func referenceDType(_ key: String) -> DType? {
        let spec = json["tensors"]?[key]?["reference_dtype"]?.string ?? json["io_keys"]?[key]?["dtype"]?.string
        switch spec {
        case "torch.int64", "int64": return .int64
        case "torch.int32", "int32": return .int32
        case "torch.uint8", "uint8": return .uint8
        case "torch.bool", "bool": return .bool
        default: return nil
        }
    }

    /// The weights to load: weights.safetensors (or another named file in the folder).
    public func weights(_ file: String = "weights.safetensors") throws -> StateDictSource {
        let path = directory.appendingPathComponent(file).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw FixtureError("\(name): no \(file) in \(directory.path)")
        }
        return try SafeTensorsSource(path: path)
    }

    /// Maximum absolute error allowed for `key`: a per-key entry (`out.sample` or `sample`),
    /// `intermediates` for out.intermediate.*, else `default` (or a bare number).
    public func tolerance(for key: String) -> Double {
        guard let tol = json["tolerance"] else { return 1e-4 }
        if let d = tol.double { return d }
        let short = key.hasPrefix("out.") ? String(key.dropFirst(4)) : key
        if let d = tol[key]?.double ?? tol[short]?.double { return d }
        if key.hasPrefix("out.intermediate."), let d = tol["intermediates"]?.double { return d }
        return tol["default"]?.double ?? 1e-4
    }
}
