// Module.swift — torch.nn.Module for Swift: named children, parameters and buffers found by
// reflection, giving PyTorch's dotted key paths; strict state-dict loading; freezing by glob;
// train/eval mode; dtype/device casting.
//
// Naming rule: a module's stored property names ARE the PyTorch key names (`to_q`, `conv1`,
// `time_emb_proj`). What reflection sees:
//   * `Tensor` / `Tensor?`          → a parameter;
//   * `@Buffer var x: Tensor`       → a buffer (persistent ones are in the state dict);
//   * `Module` / `Module?`          → a child;
//   * `[Module]` (any Module type)  → children keyed `name.0`, `name.1`, … (nn.ModuleList);
//   * anything else (numbers, [Tensor], caches) is ignored.
import Foundation
import Torch

/// Marks a stored tensor as a buffer (`register_buffer`), not a parameter.
@propertyWrapper
public struct Buffer {
    public var wrappedValue: Tensor
    public let persistent: Bool
    public init(wrappedValue: Tensor, persistent: Bool = true) {
        self.wrappedValue = wrappedValue
        self.persistent = persistent
    }
}

/// How new parameters are filled. `.uninitialized` allocates storage without writing it (for
/// building full-size models only to inspect keys or to load weights into).
public enum ParameterInit: Sendable {
    case pytorchDefault
    case uninitialized

    @TaskLocal public static var mode: ParameterInit = .pytorchDefault

    /// Builds modules with uninitialised storage.
    public static func uninitialized<R>(_ body: () throws -> R) rethrows -> R {
        try $mode.withValue(.uninitialized, operation: body)
    }
}

/// A layer with one tensor in and one out (for Sequential).
public protocol UnaryLayer: Module {
    func callAsFunction(_ x: Tensor) throws -> Tensor
}

private protocol AnyOptional {
    var wrapped: Any? { get }
}
extension Optional: AnyOptional {
    var wrapped: Any? {
        switch self {
        case .some(let v): return v
        case .none: return nil
        }
    }
}

open class Module {
    /// Training mode (dropout, batch-norm statistics); set with train()/eval().
    public private(set) var training = true

    public init() {}

    // MARK: reflection

    private enum Item {
        case parameter(Tensor)
        case buffer(Tensor, persistent: Bool)
        case child(Module)
    }

    /// Containers (Sequential) list their children themselves, keyed 0, 1, 2, …
    open func listedChildren() -> [(String, Module)]? { nil }

    /// Own items in declaration order, base class first.
    private func ownItems() -> [(String, Item)] {
        if let listed = listedChildren() { return listed.map { ($0.0, .child($0.1)) } }
        var mirrors: [Mirror] = []
        var m: Mirror? = Mirror(reflecting: self)
        while let cur = m {
            mirrors.append(cur)
            m = cur.superclassMirror
        }
        var out: [(String, Item)] = []
        for mirror in mirrors.reversed() {
            for child in mirror.children {
                guard var label = child.label else { continue }
                var value: Any = child.value
                if let o = value as? AnyOptional {
                    guard let w = o.wrapped else { continue }
                    value = w
                }
                if let b = value as? Buffer {
                    if label.hasPrefix("_") { label.removeFirst() }
                    out.append((label, .buffer(b.wrappedValue, persistent: b.persistent)))
                } else if let t = value as? Tensor {
                    out.append((label, .parameter(t)))
                } else if let c = value as? Module {
                    out.append((label, .child(c)))
                } else if let list = value as? [Module] {
                    for (i, c) in list.enumerated() { out.append(("\(label).\(i)", .child(c))) }
                }
            }
        }
        return out
    }

    public func namedChildren() -> [(String, Module)] {
        ownItems().compactMap { if case .child(let c) = $0.1 { return ($0.0, c) } else { return nil } }
    }

    /// Every module below (and including) this one, with its dotted path ("" for self).
    public func namedModules(prefix: String = "") -> [(String, Module)] {
        var out: [(String, Module)] = [(prefix, self)]
        for (name, child) in namedChildren() {
            out += child.namedModules(prefix: prefix.isEmpty ? name : "\(prefix).\(name)")
        }
        return out
    }

    private func collect(prefix: String, _ pick: (Item) -> Tensor?) -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (name, item) in ownItems() {
            let path = prefix.isEmpty ? name : "\(prefix).\(name)"
            if case .child(let c) = item {
                out += c.collect(prefix: path, pick)
            } else if let t = pick(item) {
                out.append((path, t))
            }
        }
        return out
    }

    public func namedParameters() -> [(String, Tensor)] {
        collect(prefix: "") { if case .parameter(let t) = $0 { return t } else { return nil } }
    }

    public func namedBuffers(persistentOnly: Bool = false) -> [(String, Tensor)] {
        collect(prefix: "") {
            if case .buffer(let t, let p) = $0, p || !persistentOnly { return t } else { return nil }
        }
    }

    public func parameters() -> [Tensor] { namedParameters().map(\.1) }

    /// Parameters with requires_grad set.
    public func trainableParameters() -> [(String, Tensor)] { namedParameters().filter { $0.1.requiresGrad } }

    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.1.numel } }

    /// Parameters and persistent buffers, keyed as PyTorch's `state_dict()`.
    public func stateDict() -> [(String, Tensor)] {
        collect(prefix: "") {
            switch $0 {
            case .parameter(let t): return t
            case .buffer(let t, let p): return p ? t : nil
            case .child: return nil
            }
        }
    }

    // MARK: loading

    /// Loads weights by key. Problems are gathered for every key before anything is reported:
    /// missing keys (unless matched by `allowMissing` globs), unexpected keys (unless matched by
    /// `ignoreUnexpected`) and shape mismatches (always an error). Non-strict loading skips
    /// missing and unexpected keys but still refuses shape mismatches. Values are copied into the
    /// existing tensors (dtype converted), so optimizers keep pointing at the same parameters.
    @discardableResult
    public func load(from source: StateDictSource, strict: Bool = true, allowMissing: [String] = [],
                     ignoreUnexpected: [String] = []) throws -> LoadReport {
        let own = stateDict()
        let ownKeys = Set(own.map(\.0))
        var report = LoadReport(source: source.sourceName)
        for (key, tensor) in own {
            guard let shape = source.shape(of: key) else {
                if !Glob.matchesAny(key, allowMissing) { report.missing.append(key) }
                continue
            }
            if shape != tensor.shape {
                report.mismatched.append(.init(key: key, expected: tensor.shape, found: shape))
            }
        }
        for key in source.keys where !ownKeys.contains(key) && !Glob.matchesAny(key, ignoreUnexpected) {
            report.unexpected.append(key)
        }
        if !report.mismatched.isEmpty || (strict && !(report.missing.isEmpty && report.unexpected.isEmpty)) {
            throw StateDictError(report: report, moduleName: String(describing: type(of: self)))
        }
        try Torch.noGrad {
            for (key, tensor) in own where source.shape(of: key) != nil {
                try source.read(key, into: tensor)
                report.loaded += 1
            }
        }
        return report
    }

    @discardableResult
    public func load(stateDict: [String: Tensor], strict: Bool = true, allowMissing: [String] = [],
                     ignoreUnexpected: [String] = []) throws -> LoadReport {
        try load(from: TensorDictSource(stateDict), strict: strict, allowMissing: allowMissing,
                 ignoreUnexpected: ignoreUnexpected)
    }

    // MARK: freezing, modes, casting

    /// Sets requires_grad = false on every parameter whose full key matches one of the globs
    /// (`*` matches any run of characters, dots included). Returns the keys it changed.
    @discardableResult
    public func freeze(_ patterns: [String] = ["*"]) throws -> [String] { try setRequiresGrad(false, patterns) }

    @discardableResult
    public func unfreeze(_ patterns: [String] = ["*"]) throws -> [String] { try setRequiresGrad(true, patterns) }

    private func setRequiresGrad(_ flag: Bool, _ patterns: [String]) throws -> [String] {
        var changed: [String] = []
        for (key, t) in namedParameters() where Glob.matchesAny(key, patterns) {
            try t.requiresGrad_(flag)
            changed.append(key)
        }
        return changed
    }

    public func train(_ on: Bool = true) {
        for (_, m) in namedModules() { m.training = on }
    }

    public func eval() { train(false) }

    /// Casts floating-point parameters and buffers in place (their identity is kept).
    public func to(dtype: DType) throws {
        try Torch.noGrad {
            for (_, t) in namedParameters() + namedBuffers() where t.dtype.isFloatingPoint {
                try t.setData(t.detach().to(dtype))
            }
        }
    }

    public func to(device: Device) throws {
        try Torch.noGrad {
            for (_, t) in namedParameters() + namedBuffers() { try t.setData(t.detach().to(device)) }
        }
    }
}

/// What a load found; `loaded` counts tensors copied.
public struct LoadReport: Sendable, CustomStringConvertible {
    public struct Mismatch: Sendable {
        public let key: String
        public let expected: [Int]
        public let found: [Int]
    }
    public var source: String
    public var missing: [String] = []
    public var unexpected: [String] = []
    public var mismatched: [Mismatch] = []
    public var loaded = 0

    public var description: String {
        var lines: [String] = []
        if !missing.isEmpty { lines.append("missing keys (\(missing.count)):\n" + missing.map { "  \($0)" }.joined(separator: "\n")) }
        if !unexpected.isEmpty { lines.append("unexpected keys (\(unexpected.count)):\n" + unexpected.map { "  \($0)" }.joined(separator: "\n")) }
        if !mismatched.isEmpty {
            lines.append("shape mismatches (\(mismatched.count)):\n" + mismatched.map {
                "  \($0.key): expected \($0.expected), found \($0.found)"
            }.joined(separator: "\n"))
        }
        return lines.isEmpty ? "all \(loaded) keys loaded" : lines.joined(separator: "\n")
    }
}

public struct StateDictError: Error, CustomStringConvertible {
    public let report: LoadReport
    public let moduleName: String
    public var description: String {
        "loading \(report.source) into \(moduleName) failed:\n\(report)"
    }
}

/// Anything weights can be loaded from: an in-memory dict, a safetensors file, a .pth import.
public protocol StateDictSource {
    var sourceName: String { get }
    var keys: [String] { get }
    func shape(of key: String) -> [Int]?
    /// Copies the value of `key` into `tensor` (same shape; dtype converted).
    func read(_ key: String, into tensor: Tensor) throws
}

public struct TensorDictSource: StateDictSource {
    public let tensors: [String: Tensor]
    public let sourceName: String
    public init(_ tensors: [String: Tensor], name: String = "state dict") {
        self.tensors = tensors
        self.sourceName = name
    }
    public init(_ list: [(String, Tensor)], name: String = "state dict") {
        self.init(Dictionary(list, uniquingKeysWith: { a, _ in a }), name: name)
    }
    public var keys: [String] { tensors.keys.sorted() }
    public func shape(of key: String) -> [Int]? { tensors[key]?.shape }
    public func read(_ key: String, into tensor: Tensor) throws {
        guard let t = tensors[key] else { throw TorchError("\(sourceName): no key \(key)") }
        try tensor.copy_(t)
    }
}

/// Shell-style globs over dotted keys: `*` any run (dots included), `?` one character.
public enum Glob {
    public static func matches(_ key: String, _ pattern: String) -> Bool {
        fnmatch(pattern, key, 0) == 0
    }
    public static func matchesAny(_ key: String, _ patterns: [String]) -> Bool {
        patterns.contains { matches(key, $0) }
    }
}
