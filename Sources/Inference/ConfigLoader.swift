// ConfigLoader.swift — YAML configs decoded into typed structs (like the reference training
// configs), with errors a user can act on: the file, the key path, what was expected, and for a
// misspelled key the closest valid one.
import Foundation
import NN
import Yams

public struct ConfigError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public init(file: String, _ message: String) {
        self.file = file
        self.message = message
    }
    public var description: String { "\(file): \(message)" }
}

public enum ConfigLoader {
    /// Decodes `T` from YAML text; `file` names the source in errors, `prefix` is prepended to
    /// key paths (for sections decoded on their own).
    public static func decode<T: Decodable>(_ type: T.Type, yaml: String, file: String, prefix: String = "") throws -> T {
        do {
            return try YAMLDecoder().decode(T.self, from: yaml)
        } catch {
            throw describe(error, file: file, prefix: prefix)
        }
    }

    public static func load<T: Decodable>(_ type: T.Type, path: String) throws -> T {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, "cannot read the file")
        }
        return try decode(T.self, yaml: text, file: path)
    }

    /// Decodes a section held as a JSONValue (e.g. a stage's `model:` section), strictly.
    public static func section<T: Decodable>(_ type: T.Type, _ value: JSONValue?, name: String, file: String) throws -> T {
        do {
            return try (value ?? .object([:])).decode(T.self)
        } catch {
            throw describe(error, file: file, prefix: name)
        }
    }

    static func join(_ prefix: String, _ path: [CodingKey]) -> String {
        let parts = path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
        let tail = parts.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        if prefix.isEmpty { return tail }
        return tail.isEmpty ? prefix : "\(prefix).\(tail)"
    }

    public static func describe(_ error: Error, file: String, prefix: String) -> ConfigError {
        if let e = error as? ConfigError { return e }
        if let u = error as? UnknownConfigKeyError {
            let path = prefix.isEmpty ? u.path : (u.path.isEmpty ? prefix : "\(prefix).\(u.path)")
            let full = path.isEmpty ? u.key : "\(path).\(u.key)"
            return ConfigError(file: file, "unknown key '\(full)'" + (u.suggestion.map { " (did you mean '\($0)'?)" } ?? ""))
        }
        if let d = error as? DecodingError {
            switch d {
            case .typeMismatch(let type, let ctx):
                return ConfigError(file: file, "'\(join(prefix, ctx.codingPath))': expected \(typeName(type))")
            case .valueNotFound(let type, let ctx):
                return ConfigError(file: file, "'\(join(prefix, ctx.codingPath))': expected \(typeName(type)), found null")
            case .keyNotFound(let key, let ctx):
                return ConfigError(file: file, "missing required key '\(join(prefix, ctx.codingPath + [key]))'")
            case .dataCorrupted(let ctx):
                if let u = ctx.underlyingError { return describe(u, file: file, prefix: join(prefix, ctx.codingPath)) }
                return ConfigError(file: file, "'\(join(prefix, ctx.codingPath))': \(ctx.debugDescription)")
            @unknown default:
                return ConfigError(file: file, "\(d)")
            }
        }
        return ConfigError(file: file, "\(error)")
    }

    static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is Double.Type, is Float.Type: return "a number"
        case is Int.Type, is UInt64.Type, is Int64.Type: return "an integer"
        case is Bool.Type: return "true or false"
        case is String.Type: return "a string"
        default:
            let s = "\(t)"
            if s.hasPrefix("Array") { return "a list" }
            if s.hasPrefix("Dictionary") || s.hasSuffix("Section") || s.hasSuffix("Config") { return "a mapping" }
            return s
        }
    }
}
